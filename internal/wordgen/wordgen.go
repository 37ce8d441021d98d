// Package wordgen generates the standard benchmark workload of the
// mission (section 4): lines of ten words drawn uniformly from a
// 10,000-word vocabulary. It is deterministic given its seed, so that the
// demo job, the benchmarks and the tests all see the same text.
package wordgen

import (
	"math/rand/v2"
	"strconv"
	"strings"
)

// VocabularySize is the number of distinct words.
const VocabularySize = 10000

// WordsPerLine is the number of words in a line.
const WordsPerLine = 10

// Vocabulary returns n distinct words of 3 to 8 letters.
func Vocabulary(n int) []string {
	r := rand.New(rand.NewPCG(1, 2))
	seen := make(map[string]bool, n)
	words := make([]string, 0, n)
	for len(words) < n {
		l := 3 + r.IntN(6)
		b := make([]byte, l)
		for i := range b {
			b[i] = byte('a' + r.IntN(26))
		}
		w := string(b)
		if !seen[w] {
			seen[w] = true
			words = append(words, w)
		}
	}
	return words
}

// Generator makes lines of the standard workload.
type Generator struct {
	vocab []string
	r     *rand.Rand
	buf   strings.Builder
}

// New returns a generator with the standard vocabulary and the given seed.
func New(seed uint64) *Generator {
	return &Generator{vocab: Vocabulary(VocabularySize), r: rand.New(rand.NewPCG(seed, 7))}
}

// NewSized returns a generator drawing from the first vocab words of the
// vocabulary (Vocabulary(vocab)).
func NewSized(seed uint64, vocab int) *Generator {
	return &Generator{vocab: Vocabulary(vocab), r: rand.New(rand.NewPCG(seed, 7))}
}

// Line returns the next line.
func (g *Generator) Line() string {
	g.buf.Reset()
	for i := 0; i < WordsPerLine; i++ {
		if i > 0 {
			g.buf.WriteByte(' ')
		}
		g.buf.WriteString(g.vocab[g.r.IntN(len(g.vocab))])
	}
	return g.buf.String()
}

// Lines returns n lines.
func (g *Generator) Lines(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = g.Line()
	}
	return out
}

// LineAt returns line i of an endless deterministic sequence, computed
// without state, so that tasks on any executor can generate it.
func LineAt(vocab []string, i int64) string {
	r := rand.New(rand.NewPCG(uint64(i), 0x5eed))
	var b strings.Builder
	for j := 0; j < WordsPerLine; j++ {
		if j > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(vocab[r.IntN(len(vocab))])
	}
	return b.String()
}

// Label returns a human-readable name of n, "1.5M".
func Label(n float64) string {
	switch {
	case n >= 1e6:
		return strconv.FormatFloat(n/1e6, 'f', 1, 64) + "M"
	case n >= 1e3:
		return strconv.FormatFloat(n/1e3, 'f', 1, 64) + "K"
	}
	return strconv.FormatFloat(n, 'f', 0, 64)
}

// Fields calls emit for every space-separated word of line. Unlike
// strings.Fields it allocates nothing.
func Fields(line string, emit func(string)) {
	start := -1
	for i := 0; i < len(line); i++ {
		if line[i] == ' ' || line[i] == '\t' || line[i] == '\n' || line[i] == '\r' {
			if start >= 0 {
				emit(line[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		emit(line[start:])
	}
}
