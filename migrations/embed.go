// Package migrations holds the SQL migrations of the stripe-webhooks schema,
// embedded so that `worker migrate` runs from any directory.
package migrations

import "embed"

// FS holds the numbered goose migrations (each file has an Up and a Down part).
//
//go:embed *.sql
var FS embed.FS
