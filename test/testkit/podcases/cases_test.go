package podcases

import (
	"path/filepath"
	"testing"
)

func TestLoadCases(t *testing.T) {
	cases, err := LoadCases(filepath.Join("..", "..", "..", "webhook", "inject", "testdata", "pods"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 20 {
		t.Fatalf("%d cases", len(cases))
	}
	for _, c := range cases {
		if c.Pod == nil || len(c.Raw) == 0 || c.Namespace.Name == "" {
			t.Errorf("%s: incomplete case", c.Name)
		}
		e1, err := c.Compile()
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if e2, _ := c.Compile(); e2 != e1 {
			t.Errorf("%s: the engine for one configuration is compiled once and shared", c.Name)
		}
	}
	if _, err := LoadCase("missing.yaml"); err == nil {
		t.Error("a missing fixture must fail")
	}
}
