package images

import "runtime"

func goarch() string { return runtime.GOARCH }
