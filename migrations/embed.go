package migrations

import "embed"

// FS holds the numbered goose migrations (each file has an Up and a Down part).
//
//go:embed *.sql
var FS embed.FS
