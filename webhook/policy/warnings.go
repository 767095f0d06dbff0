package policy

// Warning is a legal value that is probably not what the policy author
// meant. It does not stop the file from loading; it is logged, shown in
// /readyz and by explain.
type Warning struct {
	// Path is where the value is in the file, such as
	// "policies[1] (payments): settings.envoy.outbound.connectTimeout".
	Path string
	// Message says what the value does and what was probably meant.
	Message string
	// Policies are the policies it concerns (explain shows it for them);
	// empty for the file as a whole.
	Policies []string
	// Field is the settings path when the warning is about a setting a
	// policy may inherit from the file defaults.
	Field string
}

func (w Warning) String() string {
	if w.Path == "" {
		return w.Message
	}
	return w.Path + ": " + w.Message
}

func fileWarnings(c *Config, sets map[string]map[string]string) []Warning { return nil }
