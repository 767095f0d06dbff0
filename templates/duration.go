package templates

import (
	"fmt"
	"strconv"
	"time"
)

// protoDuration converts Go duration text ("1m30s", "250ms") to the form
// protobuf's JSON mapping requires ("90s", "0.250s").
func protoDuration(s string) (string, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return "", fmt.Errorf("protoDuration: %w", err)
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s", nil
}
