package inject

import "github.com/sidecar-injector/injector/webhook/policy"

// Loader reads the policy file and compiles it into an Engine, for the
// server (which also watches the file) and the offline commands alike.
type Loader = policy.Loader[*Engine]

// NewLoader returns a loader of the policy file at path ("" for the
// built-in defaults) that compiles engines with opts.
func NewLoader(path string, opts Options) *Loader {
	return &Loader{Path: path, Build: func(c *policy.Config) (*Engine, error) { return New(c, opts) }}
}

// Compile builds an engine from policy file content (nil or empty for the
// built-in defaults), validating every Envoy bootstrap against Envoy's
// schema.
func Compile(data []byte, opts Options) (*Engine, error) {
	cfg, err := policy.ParseFile(data)
	if err != nil {
		return nil, err
	}
	return New(cfg, opts)
}
