package main

import (
	"strings"
	"testing"
)

const specText = `# a comment
file a/b.go
test go test ./a

mutant flip: the condition inverted
- if x < y {
+ if x >= y {
mutant drop-two: two lines removed
- a()
- b()
mutant swap: two lines for one
= c and d do the same
= in this test
- c()
+ d()
+ e()
`

const src = `package a

func f() {
	if x < y {
		a()
		b()
	}
	c()
}
`

func TestParseAndApply(t *testing.T) {
	ms, err := parseSpec(strings.NewReader(specText), "spec")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || ms[0].File != "a/b.go" || ms[0].Test != "go test ./a" || ms[0].Why != "the condition inverted" {
		t.Fatalf("parsed %+v", ms[0])
	}
	if ms[2].Equivalent != "c and d do the same in this test" || ms[0].Equivalent != "" {
		t.Fatalf("equivalence notes %q, %q", ms[0].Equivalent, ms[2].Equivalent)
	}
	want := []string{
		"package a\n\nfunc f() {\n\tif x >= y {\n\t\ta()\n\t\tb()\n\t}\n\tc()\n}\n",
		"package a\n\nfunc f() {\n\tif x < y {\n\t\t\n\t}\n\tc()\n}\n",
		"package a\n\nfunc f() {\n\tif x < y {\n\t\ta()\n\t\tb()\n\t}\n\td()\n\te()\n}\n",
	}
	for i, m := range ms {
		got, err := m.apply(src)
		if err != nil {
			t.Fatal(err)
		}
		if got != want[i] {
			t.Errorf("mutant %s:\ngot  %q\nwant %q", m.Name, got, want[i])
		}
	}
}

func TestApplyNeedsOnePlace(t *testing.T) {
	for _, tc := range []struct{ orig, err string }{
		{"z()", "no longer contains"},
		{"()", "occurs 4 times"},
	} {
		m := &Mutant{Name: "m", File: "a/b.go", Orig: []string{tc.orig}}
		if _, err := m.apply(src); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: error %v, want one containing %q", tc.orig, err, tc.err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ spec, err string }{
		{"mutant m\n- x\n", "before its file and test"},
		{"file f\ntest t\n- x\n", "outside a mutant"},
		{"file f\ntest t\nmutant m\n+ x\n", "no original"},
		{"file f\ntest t\nmutant m\n- x\nmutant m\n- y\n", "used twice"},
		{"file f\ntest t\nbogus\n", "cannot read"},
	} {
		if _, err := parseSpec(strings.NewReader(tc.spec), "spec"); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: error %v, want one containing %q", tc.spec, err, tc.err)
		}
	}
}
