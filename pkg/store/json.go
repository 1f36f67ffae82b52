package store

import (
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// JSON is a jsonb value. It is sent to Postgres as text, which jsonb accepts
// under both the extended and the simple query protocol, unlike []byte.
//
// That alone does not make the services fit any connection pooler: they use
// named prepared statements (pgx's statement cache, and the ingest's batch
// insert, sw_insert_batch_v3), so behind PgBouncer they need session pooling, or
// transaction pooling in PgBouncer 1.21 or later with max_prepared_statements
// above 0 (it then tracks protocol-level prepared statements per server
// connection). Statement pooling does not work: events are applied in
// multi-statement transactions. deploy/README.md ("Behind a connection
// pooler") says the same.
type JSON []byte

// Value implements driver.Valuer.
func (j JSON) Value() (driver.Value, error) {
	if j == nil {
		return nil, nil
	}
	return string(j), nil
}

// Scan implements sql.Scanner.
func (j *JSON) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*j = nil
	case []byte:
		*j = append((*j)[:0], v...)
	case string:
		*j = JSON(v)
	default:
		return fmt.Errorf("store: cannot scan %T into JSON", src)
	}
	return nil
}

// MarshalJSON returns the raw document.
func (j JSON) MarshalJSON() ([]byte, error) {
	if j == nil {
		return []byte("null"), nil
	}
	return j, nil
}

// UnmarshalJSON keeps the raw document.
func (j *JSON) UnmarshalJSON(b []byte) error {
	if j == nil {
		return errors.New("store: UnmarshalJSON on nil JSON")
	}
	*j = append((*j)[:0], b...)
	return nil
}

// decoded returns j decoded, nil for no document.
func decoded(j JSON) (any, error) {
	if len(j) == 0 {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal(j, &v); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return v, nil
}

// sameJSON reports whether a and b hold the same document, whatever their
// spacing and key order.
func sameJSON(a, b JSON) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// equalJSON reports, as sameJSON does, whether a and b are valid documents
// that decode to equal values, without decoding them into Go maps; it
// answers false when unsure (an object naming a key twice, a string that
// is not UTF-8). An event applied against the state an event of the same
// second wrote mostly finds that state already its own: this says so at a
// fraction of what decoding both would cost.
func equalJSON(a, b []byte) bool {
	if !gjson.ValidBytes(a) || !gjson.ValidBytes(b) {
		return false
	}
	return equalValue(gjson.ParseBytes(a), gjson.ParseBytes(b))
}

func equalValue(x, y gjson.Result) bool {
	if x.Type != y.Type {
		return false
	}
	switch x.Type {
	case gjson.Number:
		return x.Num == y.Num // encoding/json decodes numbers to float64 too
	case gjson.String:
		return x.Str == y.Str && utf8.ValidString(x.Str)
	case gjson.JSON:
		switch {
		case x.IsArray() && y.IsArray():
			xs, ys := x.Array(), y.Array()
			if len(xs) != len(ys) {
				return false
			}
			for i := range xs {
				if !equalValue(xs[i], ys[i]) {
					return false
				}
			}
			return true
		case x.IsObject() && y.IsObject():
			return equalObjects(x, y)
		}
		return false
	}
	return true // null, true, false
}

// equalObjects compares two objects key by key, whatever their order; an
// object that names a key twice is not compared.
func equalObjects(x, y gjson.Result) bool {
	xm, ym := x.Map(), y.Map()
	if len(xm) != len(ym) || countKeys(x) != len(xm) || countKeys(y) != len(ym) {
		return false
	}
	for k, v := range xm {
		w, ok := ym[k]
		if !ok || !utf8.ValidString(k) || !equalValue(v, w) {
			return false
		}
	}
	return true
}

func countKeys(o gjson.Result) int {
	n := 0
	o.ForEach(func(gjson.Result, gjson.Result) bool { n++; return true })
	return n
}

// nullable is s as a nullable column's value: NULL for "".
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// deref is a nullable column's value, "" for NULL.
func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
