package meshinit

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// The annotation carries every CaptureConfig flag and reads back into the
// same config, with the same parser mesh-init's flags use.
func TestCaptureAnnotationRoundTrip(t *testing.T) {
	cmd, err := ParseCaptureCommand([]string{
		"--include-inbound-ports=80,8000-8100", "--exclude-inbound-ports=8761",
		"--include-outbound-ports=443", "--exclude-outbound-ports=8761",
		"--include-outbound-cidrs=10.0.0.0/8,fd00::/8", "--exclude-outbound-cidrs=10.1.0.0/16",
		"--proxy-uid=2000", "--proxy-gid=2001", "--iptables-mode=legacy", "--ipv6=required",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []CaptureConfig{DefaultCaptureConfig(), cmd.Config, func() CaptureConfig {
		c := DefaultCaptureConfig()
		c.IncludeInboundPorts, c.IncludeOutboundCIDRs = PortSet{}, CIDRSet{}
		return c
	}()} {
		v := c.AnnotationValue()
		if strings.ContainsAny(v, "\n\t") {
			t.Errorf("value %q holds more than spaces", v)
		}
		back, err := ParseCaptureAnnotation(v)
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if !reflect.DeepEqual(back, c) {
			t.Errorf("round trip of %q:\n got %+v\nwant %+v", v, back, c)
		}
	}
	if got := DefaultCaptureConfig().AnnotationValue(); !strings.HasPrefix(got, "--proxy-uid=1337 --proxy-gid=1337 --outbound-port=15001") {
		t.Errorf("default value %q", got)
	}
}

// Every malformed value fails with a message that names the annotation,
// and the flag and value where there is one.
func TestCaptureAnnotationErrors(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  []string
	}{
		{"", []string{CNIAnnotation, "is empty"}},
		{"   ", []string{CNIAnnotation, "is empty"}},
		{"--exclude-outbound-ports=80,abc", []string{CNIAnnotation, "--exclude-outbound-ports", `"abc"`}},
		{"--proxy-uid=x", []string{CNIAnnotation, "--proxy-uid", `"x"`}},
		{"--dry-run=true", []string{CNIAnnotation, "unknown flag --dry-run"}},
		{"--copy-self-to=/x", []string{CNIAnnotation, "unknown flag --copy-self-to"}},
		{"--foo=1", []string{CNIAnnotation, "unknown flag --foo"}},
		{"proxy-uid=1", []string{CNIAnnotation, `"proxy-uid=1" is not a --flag=value`}},
		{"-proxy-uid=1", []string{CNIAnnotation, "is not a --flag=value"}},
		{"--proxy-uid", []string{CNIAnnotation, "has no value"}},
		{"--inbound-port=15001", []string{CNIAnnotation, "must differ"}},
		{"--iptables-mode=xt", []string{CNIAnnotation, "--iptables-mode", "auto, nft or legacy"}},
	} {
		_, err := ParseCaptureAnnotation(tc.value)
		if err == nil {
			t.Errorf("%q: no error", tc.value)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q does not say %q", tc.value, err, w)
			}
		}
		var fe *FlagError
		var ue *UsageError
		if !errors.As(err, &fe) && !errors.As(err, &ue) {
			t.Errorf("%q: %T is neither a FlagError nor a UsageError", tc.value, err)
		}
	}
}

// The settings record the plugin writes from the annotation equals the one
// the validator computes from its own arguments when both came from the
// same settings, and differs for any other settings: the record is what
// catches an annotation changed after admission.
func TestSettingsRecord(t *testing.T) {
	args := []string{"--exclude-outbound-ports=8761,80", "--include-outbound-cidrs=fd00::/8,10.0.0.0/8", "--ipv6=required"}
	cmd, err := ParseCaptureCommand(args, nil)
	if err != nil {
		t.Fatal(err)
	}
	fromAnnotation, err := ParseCaptureAnnotation(cmd.Config.AnnotationValue())
	if err != nil {
		t.Fatal(err)
	}
	fromArgs, err := ParseCaptureCommand(cmd.Config.Args(), nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := fromAnnotation.SettingsRecord()
	if rec != fromArgs.Config.SettingsRecord() || !strings.HasPrefix(rec, SettingsRecordPrefix) || len(rec) >= 256 {
		t.Errorf("records %q and %q", rec, fromArgs.Config.SettingsRecord())
	}
	other := cmd.Config
	other.ExcludeOutboundPorts = append(PortList{{From: 1, To: 1}}, other.ExcludeOutboundPorts...)
	if other.SettingsRecord() == rec {
		t.Error("other settings, same record")
	}
}
