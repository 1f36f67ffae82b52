package corpus_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"stripe-webhooks/pkg/payload/corpus"
)

func TestSamplesAreTheSameOnEveryCall(t *testing.T) {
	t.Parallel()
	a, err := corpus.Samples()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := corpus.Samples()
	if len(a) < 10 {
		t.Fatalf("%d samples", len(a))
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Errorf("sample %d differs between calls", i)
		}
	}
}

func TestVaryKeepsKeysAndLayoutAndChangesValues(t *testing.T) {
	t.Parallel()
	samples, _ := corpus.Samples()
	rng := rand.New(rand.NewPCG(1, 1))
	for _, s := range samples {
		var ind bytes.Buffer
		_ = json.Indent(&ind, s, "", "  ")
		for _, raw := range [][]byte{s, ind.Bytes()} {
			varied, err := corpus.Vary(raw, rng)
			if err != nil {
				t.Fatal(err)
			}
			var a, b any
			if err := json.Unmarshal(raw, &a); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(varied, &b); err != nil {
				t.Fatalf("varied event is not JSON: %v", err)
			}
			same, differ := compare(a, b)
			if same != 0 || differ == 0 {
				t.Errorf("%d values kept, %d changed; want none kept (keys and shape compared too)", same, differ)
			}
			// Layout: every byte that is not in a value is where it was.
			if n := layoutDiff(raw, varied); n != 0 {
				t.Errorf("%d structural bytes moved", n)
			}
		}
	}
}

// compare walks a and b, which must have the same keys and shape, and
// counts the strings and numbers left equal and those changed (booleans
// may keep their value by chance; nulls must).
func compare(a, b any) (same, differ int) {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return 1 << 20, 0
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok {
				return 1 << 20, 0
			}
			s, d := compare(v, w)
			same, differ = same+s, differ+d
		}
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return 1 << 20, 0
		}
		for i := range x {
			s, d := compare(x[i], y[i])
			same, differ = same+s, differ+d
		}
	case bool:
		if _, ok := b.(bool); !ok {
			return 1 << 20, 0
		}
	case nil:
		if b != nil {
			return 1 << 20, 0
		}
	case string:
		if y, ok := b.(string); !ok || len(y) != len(x) {
			return 1 << 20, 0
		} else if y == x && len(x) > 3 {
			return 1, 0
		}
		return 0, 1
	case float64:
		if _, ok := b.(float64); !ok {
			return 1 << 20, 0
		}
		return 0, 1
	}
	return same, differ
}

// layoutDiff counts the differences between the skeletons of raw and
// varied: their bytes with every string's content dropped and every
// literal (number, boolean, null) made one '#': brackets, commas, colons
// and spacing.
func layoutDiff(raw, varied []byte) int {
	a, b := skeleton(raw), skeleton(varied)
	if len(a) != len(b) {
		return max(len(a), len(b))
	}
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

func skeleton(doc []byte) []byte {
	var out []byte
	for i := 0; i < len(doc); i++ {
		switch c := doc[i]; {
		case c == '"':
			for i++; i < len(doc) && doc[i] != '"'; i++ {
				if doc[i] == '\\' {
					i++
				}
			}
			out = append(out, '"', '"')
		case strings.IndexByte("{}[],: \t\r\n", c) >= 0:
			out = append(out, c)
		case len(out) == 0 || out[len(out)-1] != '#':
			out = append(out, '#')
		}
	}
	return out
}
