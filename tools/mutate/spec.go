package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Mutant is one small semantic change to one file, and the tests that
// should notice it.
type Mutant struct {
	Name string
	Why  string // what the change breaks, for the report
	File string // relative to the repository root
	Test string // shell command run from the repository root
	Orig []string
	Repl []string
	// Equivalent, if set, says why no test can notice the change (the
	// behaviour is unchanged): a survivor is then not counted.
	Equivalent string
	Line       int // of the mutant line in the spec, for errors
}

// parseSpec reads a mutant list. The format is line based:
//
//	# comment
//	file rdd/shuffle.go                 sets the file of the mutants below
//	test go test ./rdd -count=1         sets their test command
//	mutant name: what it breaks         starts a mutant
//	- original line                     one or more: the snippet to replace
//	+ replacement line                  zero or more: what replaces it
//	= why no test can see it            optional: the mutant is equivalent
//
// Snippet lines are matched without their leading indentation, so they can
// be written unindented; each must match exactly one place in the file.
func parseSpec(r io.Reader, name string) ([]*Mutant, error) {
	var (
		out        []*Mutant
		file, test string
		cur        *Mutant
	)
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "" || strings.HasPrefix(trimmed, "#"):
		case strings.HasPrefix(line, "file "):
			file, cur = strings.TrimSpace(line[5:]), nil
		case strings.HasPrefix(line, "test "):
			test, cur = strings.TrimSpace(line[5:]), nil
		case strings.HasPrefix(line, "mutant "):
			if file == "" || test == "" {
				return nil, fmt.Errorf("%s:%d: mutant before its file and test lines", name, n)
			}
			id, why, _ := strings.Cut(strings.TrimSpace(line[7:]), ":")
			cur = &Mutant{Name: strings.TrimSpace(id), Why: strings.TrimSpace(why), File: file, Test: test, Line: n}
			out = append(out, cur)
		case strings.HasPrefix(line, "= "):
			if cur == nil {
				return nil, fmt.Errorf("%s:%d: equivalence note outside a mutant", name, n)
			}
			cur.Equivalent = strings.TrimSpace(cur.Equivalent + " " + strings.TrimSpace(line[2:]))
		case line == "-" || strings.HasPrefix(line, "- ") || line == "+" || strings.HasPrefix(line, "+ "):
			if cur == nil {
				return nil, fmt.Errorf("%s:%d: snippet line outside a mutant (start one with \"mutant NAME: WHY\")", name, n)
			}
			text := strings.TrimPrefix(line[1:], " ")
			if line[0] == '-' {
				if len(cur.Repl) > 0 {
					return nil, fmt.Errorf("%s:%d: mutant %s: original line after replacement lines", name, n, cur.Name)
				}
				cur.Orig = append(cur.Orig, text)
			} else {
				cur.Repl = append(cur.Repl, text)
			}
		default:
			return nil, fmt.Errorf("%s:%d: cannot read %q: want file, test, mutant, \"- \" or \"+ \" lines", name, n, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, m := range out {
		if len(m.Orig) == 0 {
			return nil, fmt.Errorf("%s:%d: mutant %s has no original (\"- \") line", name, m.Line, m.Name)
		}
		if seen[m.Name] {
			return nil, fmt.Errorf("%s:%d: mutant name %s used twice", name, m.Line, m.Name)
		}
		seen[m.Name] = true
	}
	return out, nil
}

// apply returns src with the mutant's snippet replaced. The snippet must
// occur exactly once; leading indentation is ignored when matching, and
// replacement lines after the first take the indentation of the first
// matched line.
func (m *Mutant) apply(src string) (string, error) {
	parts := make([]string, len(m.Orig))
	for i, l := range m.Orig {
		parts[i] = regexp.QuoteMeta(strings.TrimLeft(l, " \t"))
	}
	re := regexp.MustCompile(`(?m)^([ \t]*)(.*?)` + strings.Join(parts, `\n[ \t]*`))
	locs := re.FindAllStringSubmatchIndex(src, -1)
	switch len(locs) {
	case 0:
		return "", fmt.Errorf("mutant %s: %s no longer contains %q: update the snippet in the spec", m.Name, m.File, strings.Join(m.Orig, "\n"))
	case 1:
	default:
		return "", fmt.Errorf("mutant %s: %q occurs %d times in %s: make the snippet longer so it names one place", m.Name, strings.Join(m.Orig, "\n"), len(locs), m.File)
	}
	loc := locs[0]
	indent := src[loc[2]:loc[3]]
	start := loc[5] // after indentation and any text before the snippet on its line
	repl := make([]string, len(m.Repl))
	for i, l := range m.Repl {
		repl[i] = strings.TrimLeft(l, " \t")
	}
	return src[:start] + strings.Join(repl, "\n"+indent) + src[loc[1]:], nil
}
