package meshinit

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
)

// What the injector encodes decodes to the same bytes; what it never
// wrote (an older gzip form aside) is refused with a reason.
func TestBootstrapEncoding(t *testing.T) {
	bootstrap := []byte(`{"admin":{"address":{"socket_address":{"address":"127.0.0.1","port_value":15000}}}}`)
	enc := EncodeFile(bootstrap)
	if enc != EncodeFile(bootstrap) {
		t.Fatal("EncodeFile is not deterministic")
	}
	if got, err := DecodeFile(enc); err != nil || !bytes.Equal(got, bootstrap) {
		t.Fatalf("round trip: %q, %v", got, err)
	}

	// Pods made by an injector from before dictionaries carry gzip.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bootstrap)
	zw.Close()
	if got, err := DecodeFile(base64.StdEncoding.EncodeToString(gz.Bytes())); err != nil || string(got) != string(bootstrap) {
		t.Errorf("the gzip form: %q, %v", got, err)
	}
	if _, err := DecodeFile("d9." + strings.TrimPrefix(enc, "d1.")); err == nil || !strings.Contains(err.Error(), `dictionary "d9"`) || !strings.Contains(err.Error(), "older than the injector") {
		t.Errorf("an unknown dictionary: %v", err)
	}
	// A path where the argument belongs is not an unknown dictionary.
	if _, err := DecodeFile("bootstrap.json"); err == nil || strings.Contains(err.Error(), "older") || !strings.Contains(err.Error(), "not base64") {
		t.Errorf("a file name: %v", err)
	}
	// zlib's checks: no single flipped bit and no trailing data gets
	// through as another bootstrap (a flip in padding may decode to the
	// same one).
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(enc, "d1."))
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(raw) * 8 {
		bad := bytes.Clone(raw)
		bad[i/8] ^= 1 << (i % 8)
		if got, err := DecodeFile("d1." + base64.StdEncoding.EncodeToString(bad)); err == nil && !bytes.Equal(got, bootstrap) {
			t.Fatalf("bit %d flipped: decoded without error to %q", i, got)
		}
	}
	if _, err := DecodeFile("d1." + base64.StdEncoding.EncodeToString(append(bytes.Clone(raw), "garbage!"...))); err == nil {
		t.Error("data after the stream was accepted")
	}
}

// A released dictionary is part of the wire format: pods in etcd carry
// arguments compressed against it. Change one and every such pod's init
// container fails on its next run; add the next one instead (encoding.go).
func TestDictionariesAreFrozen(t *testing.T) {
	released := map[string]string{
		"d1": "8dd6faac34a405cb22f050bb37c75bcfe66f780e9b54d97f0e2ebd6ed51db1b9",
	}
	for name, want := range released {
		got, ok := dictionarySum(name)
		if !ok || got != want {
			t.Errorf("dictionary %s: sha256 %q, released as %q: never change a released dictionary, add the next", name, got, want)
		}
	}
	// The encoder uses the newest, and its output names it.
	if enc := EncodeFile([]byte("{}")); !strings.HasPrefix(enc, dictionaries[len(dictionaries)-1].name+".") {
		t.Errorf("EncodeFile gave %q", enc)
	}
}

// dictionarySum is the SHA-256 of a dictionary's content, for the test that
// keeps released dictionaries unchanged.
func dictionarySum(name string) (string, bool) {
	for _, d := range dictionaries {
		if d.name == name {
			return fmt.Sprintf("%x", sha256.Sum256(d.data)), true
		}
	}
	return "", false
}
