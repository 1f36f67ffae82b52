// Package payload is the stored form of a delivery's body: the raw bytes
// Stripe sent, byte for byte, compressed with zstd
// (github.com/klauspost/compress/zstd, pure Go) and a dictionary built from
// Stripe's example objects, for a bytea column. Decode also takes the plain
// JSON of rows stored before this format, which stay as they are.
//
// # Format
//
// A stored payload is one standard zstd frame: magic, a header with the
// content size and the dictionary's id (one byte for ids below 256; none
// for 0, no dictionary), then the blocks. Anyone holding the dictionary
// reads it back with the zstd command line too:
//
//	psql -Atc "SELECT encode(payload, 'base64') FROM …" | base64 -d | zstd -dc -D pkg/payload/stripe-1.dict
//
// Each frame ends with zstd's content checksum (the low 32 bits of the
// xxhash64 of the raw body: 4 bytes, well under a microsecond), which
// Decode verifies: a damaged payload is an error, never other bytes taken
// for what Stripe sent. Without it, most damage decodes silently to wrong
// bytes (four in five single-bit flips of a varied account.updated frame),
// as in a text column; Postgres's page checksums would catch it only where
// the cluster was initialised with them (initdb --data-checksums), which
// is not the default.
//
// # Dictionaries
//
// Each dictionary is an embedded file stripe-<id>.dict holding a zstd
// dictionary of that id. Encode uses the one of the highest id; Decode
// knows them all, and the frame names the one it needs. A dictionary is
// never changed or removed once released: a better one is added as a new
// file under the next id (make it with internal/mkdict, raising its
// dictID), and old rows keep decoding with theirs. Rows whose dictionary
// id is unknown (a row written by a newer release, read by an older one)
// fail to decode with an error; roll out a new dictionary's decoder
// before its encoder, or in the same release to every service at once.
//
// stripe-1.dict is built by internal/mkdict from corpus.Samples, and a test
// checks the committed file is what it builds.
//
// # Concurrency
//
// Encode and Decode share one zstd.Encoder and one zstd.Decoder, built on
// first use. klauspost's EncodeAll and DecodeAll are documented as safe for
// concurrent use: each call takes one of GOMAXPROCS block encoders (or
// decoders) from a channel and returns it, so at most GOMAXPROCS calls run
// at once and the others wait for one.
package payload

//go:generate go run ./internal/mkdict -o stripe-1.dict
