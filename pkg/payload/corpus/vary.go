package corpus

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
)

// alphabet is what random text is made of: the characters of Stripe's ids.
const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// Vary returns a copy of the JSON document raw with the same keys,
// structure and spacing, but every value drawn from rng: each string value
// (not key) is random text of the same length in bytes, each number has
// random digits (as many, and 0 stays 0 as a first digit), each boolean is
// true or false at random; nulls stay. Such an event is as long and as
// nested as raw, but a compressor, or a dictionary, only finds its keys and
// layout again, never its values: a pessimistic stand-in for a real
// platform's events, whose ids are random but whose enumerations (status,
// object, currency) repeat.
func Vary(raw []byte, rng *rand.Rand) ([]byte, error) {
	if !json.Valid(raw) {
		return nil, errors.New("corpus: not a JSON document")
	}
	out := make([]byte, 0, len(raw)+16)
	for i := 0; i < len(raw); {
		switch c := raw[i]; {
		case c == '"':
			end := stringEnd(raw, i)
			if isKey(raw, end) {
				out = append(out, raw[i:end]...)
			} else {
				out = append(out, '"')
				out = append(out, randomText(rng, end-i-2)...)
				out = append(out, '"')
			}
			i = end
		case c == '-' || c >= '0' && c <= '9':
			end := i
			for end < len(raw) && isNumberByte(raw[end]) {
				end++
			}
			out = appendRandomNumber(out, raw[i:end], rng)
			i = end
		case c == 't' || c == 'f':
			if rng.IntN(2) == 0 {
				out = append(out, "true"...)
			} else {
				out = append(out, "false"...)
			}
			i += len("true")
			if c == 'f' {
				i++
			}
		default: // structure, spacing, null
			out = append(out, c)
			i++
		}
	}
	return out, nil
}

// stringEnd is the index just past the string literal opening at raw[i].
func stringEnd(raw []byte, i int) int {
	for j := i + 1; j < len(raw); j++ {
		switch raw[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(raw)
}

// isKey reports whether the string ending just before raw[end] is an
// object's key: the next byte that is not space is a colon.
func isKey(raw []byte, end int) bool {
	for ; end < len(raw); end++ {
		switch raw[end] {
		case ' ', '\t', '\n', '\r':
		default:
			return raw[end] == ':'
		}
	}
	return false
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// appendRandomNumber appends num with each digit drawn from rng: a first
// digit of the number or of its exponent stays 0 if it is 0 (so that 0.5 and 0
// stay valid) and is never 0 otherwise.
func appendRandomNumber(out, num []byte, rng *rand.Rand) []byte {
	first := true
	for _, c := range num {
		switch {
		case c < '0' || c > '9':
			out = append(out, c)
			first = c == 'e' || c == 'E' || (first && c == '-')
		case first && c == '0':
			out = append(out, '0')
			first = false
		case first:
			out = append(out, byte('1'+rng.IntN(9)))
			first = false
		default:
			out = append(out, byte('0'+rng.IntN(10)))
		}
	}
	return out
}

// randomText is n characters of alphabet drawn from rng.
func randomText(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}
