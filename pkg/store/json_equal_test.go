package store

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/tidwall/gjson"

	"stripe-webhooks/pkg/stripefixture"
)

// equalJSON never says equal where decoding both documents would not, and
// says equal for one document however it is spaced and ordered.
func FuzzEqualJSONAgreesWithDecoding(f *testing.F) {
	requirements := gjson.GetBytes(stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_eq"}),
		"data.object.requirements").Raw
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(requirements)); err != nil {
		f.Fatal(err)
	}
	var decoded any
	if err := json.Unmarshal([]byte(requirements), &decoded); err != nil {
		f.Fatal(err)
	}
	sorted, _ := json.Marshal(decoded) // keys in another order
	for _, pair := range [][2]string{
		{requirements, compact.String()},
		{requirements, string(sorted)},
		{requirements, `{"currently_due": []}`},
		{`{"a": 1, "b": [1, 2]}`, `{"b":[1,2],"a":1.0}`},
		{`{"a": 1, "b": [1, 2]}`, `{"b":[2,1],"a":1}`},
		{`{"a": 1e2}`, `{"a": 100}`},
		{`{"a": "\u00e9"}`, `{"a": "é"}`},
		{`{"a": 1, "a": 2}`, `{"a": 2}`},
		{`{"a": 1, "a": 1}`, `{"a": 1, "b": 1}`},
		{`{"a": null}`, `{}`},
		{`{"a": null}`, `{"a": false}`},
		{`[true, false, null]`, `[true,false,null]`},
		{`"x"`, `"x" `},
		{`{"a": 1}`, `{"a": 1`},
		{`{"a": "\ud800"}`, `{"a": "\ufffd"}`},
		{"{\"a\": \"\xff\"}", "{\"a\": \"\xfe\"}"},
		{``, ``},
	} {
		f.Add(pair[0], pair[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if equalJSON([]byte(a), []byte(b)) && !sameJSON(JSON(a), JSON(b)) {
			t.Errorf("equalJSON says %q and %q are equal; decoded they are not", a, b)
		}
	})
}

func TestEqualJSONSeesOneDocumentInAnyForm(t *testing.T) {
	requirements := gjson.GetBytes(stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_eq"}),
		"data.object.requirements").Raw
	var decoded any
	if err := json.Unmarshal([]byte(requirements), &decoded); err != nil {
		t.Fatal(err)
	}
	sorted, _ := json.Marshal(decoded)
	indented, _ := json.MarshalIndent(decoded, "", "    ")
	for _, other := range []string{requirements, string(sorted), string(indented)} {
		if !equalJSON([]byte(requirements), []byte(other)) {
			t.Errorf("equalJSON(%s, %s) = false", requirements, other)
		}
	}
	for _, pair := range [][2]string{{`{"a": 1, "b": [1, 2]}`, `{"b":[1,2],"a":1.0}`}, {`{"a": 1e2}`, `{"a": 100}`},
		{`{"a": "\u00e9"}`, `{"a": "é"}`}} {
		if !equalJSON([]byte(pair[0]), []byte(pair[1])) {
			t.Errorf("equalJSON(%s, %s) = false", pair[0], pair[1])
		}
	}
	for _, pair := range [][2]string{{`{"a": 1, "b": [1, 2]}`, `{"b":[2,1],"a":1}`}, {`{"a": null}`, `{}`},
		{`{"a": 1, "a": 1}`, `{"a": 1, "b": 1}`}, {requirements, `{"currently_due": []}`}} {
		if equalJSON([]byte(pair[0]), []byte(pair[1])) {
			t.Errorf("equalJSON(%s, %s) = true", pair[0], pair[1])
		}
	}
}
