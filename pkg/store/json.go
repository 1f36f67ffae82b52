package store

import (
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
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
