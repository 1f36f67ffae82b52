package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/zstd"

	"stripe-webhooks/pkg/payload"
)

// form is one way of storing a payload.
type form struct {
	name string
	// column is the payload column's type; setup the statements that
	// follow the table's creation.
	column string
	setup  []string
	// bytea forms send the encoded bytes as bytea[]; the others send the
	// raw body as text[] and cast it.
	bytea  bool
	encode func(raw []byte) []byte             // nil: stored as sent
	decode func(stored []byte) ([]byte, error) // nil: read as stored
}

// newForms returns the four forms compared. lz4 tells whether the server
// has lz4; storage is the bytea columns' STORAGE.
func newForms(lz4 bool, storage string) []form {
	compression := "pglz"
	if lz4 {
		compression = "lz4"
	}
	setCompression := "ALTER TABLE payloads ALTER COLUMN payload SET COMPRESSION " + compression
	setStorage := "ALTER TABLE payloads ALTER COLUMN payload SET STORAGE " + storage
	noDict := noDictEncoder()
	return []form{
		{name: "jsonb + " + compression, column: "jsonb", setup: []string{setCompression}},
		{name: "json + " + compression, column: "json", setup: []string{setCompression}},
		{name: "bytea zstd (" + storage + ")", column: "bytea", setup: []string{setStorage}, bytea: true,
			encode: func(raw []byte) []byte { return noDict.EncodeAll(raw, nil) }, decode: payload.Decode},
		{name: "bytea zstd+dict (" + storage + ")", column: "bytea", setup: []string{setStorage}, bytea: true,
			encode: payload.Encode, decode: payload.Decode},
	}
}

// noDictEncoder is pkg/payload's encoder (level, checksum) without its
// dictionary.
func noDictEncoder() *zstd.Encoder {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(payload.Level), zstd.WithEncoderCRC(true))
	if err != nil {
		panic(fmt.Sprintf("zstd encoder: %v", err)) // only for invalid options
	}
	return enc
}

// createTable creates f's table, payloads: the payload and, for the
// worker's mark, a processed flag.
func (f form) createTable(ctx context.Context, conn *pgx.Conn) error {
	create := "CREATE TABLE payloads (processed boolean NOT NULL DEFAULT false, payload " + f.column + " NOT NULL)"
	for _, q := range append([]string{create}, f.setup...) {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// insertSQL is the batch insert of f: one statement for any batch size,
// as the ingest's.
func (f form) insertSQL() string {
	if f.bytea {
		return "INSERT INTO payloads (payload) SELECT p FROM unnest($1::bytea[]) AS p"
	}
	return "INSERT INTO payloads (payload) SELECT p::" + f.column + " FROM unnest($1::text[]) AS p"
}
