package envoy

import bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"

// The tests look inside what production only validates.

// Parse validates a bootstrap and returns it decoded.
func Parse(bootstrapYAML []byte) (*bootstrapv3.Bootstrap, error) { return parse(bootstrapYAML) }

// Validate validates a bootstrap.
func Validate(bootstrapYAML []byte) error {
	_, err := parse(bootstrapYAML)
	return err
}

// CompactJSON is the document ValidateCompact checks, without checking it.
func CompactJSON(bootstrapYAML []byte) (string, error) {
	js, err := toJSON(bootstrapYAML)
	return string(js), err
}
