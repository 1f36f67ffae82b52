package store

import (
	"encoding/binary"
	"time"
)

// Postgres type OIDs of the batch insert's array elements.
const (
	oidBool      = 16
	oidText      = 25
	oidTimestamp = 1114
)

// maxKeptParamBytes bounds the encoding buffer each of an Inserter's batch
// loops keeps between batches; a larger one (a batch of very large events)
// is dropped.
const maxKeptParamBytes = 1 << 20

// batchParams encodes a batch's arrays in Postgres's binary array format
// into a buffer kept between batches. pgx would encode them into a buffer it
// shrinks after every query, growing it again by doubling for each batch:
// several times the batch's payload bytes of garbage per statement.
type batchParams struct {
	buf    []byte
	values [][]byte
}

// encode returns the six parameters of insertBatch for rows, in binary
// format. They are valid until the next call.
func (p *batchParams) encode(rows eventRows) [][]byte {
	if cap(p.buf) > maxKeptParamBytes {
		p.buf = nil
	}
	size := 6 * 20
	for i := range rows.ids {
		size += 6*4 + 8 + 1 + len(rows.ids[i]) + len(rows.types[i]) + len(rows.payloads[i]) + len(rows.accounts[i])
	}
	if cap(p.buf) < size {
		p.buf = make([]byte, 0, size)
	}
	b := p.buf[:0]
	var bounds [7]int
	b = appendTextArray(b, rows.ids)
	bounds[1] = len(b)
	b = appendTextArray(b, rows.types)
	bounds[2] = len(b)
	b = appendTextArray(b, rows.payloads)
	bounds[3] = len(b)
	b = appendArrayHeader(b, oidTimestamp, len(rows.received))
	for _, t := range rows.received {
		b = binary.BigEndian.AppendUint32(b, 8)
		b = binary.BigEndian.AppendUint64(b, uint64(timestampMicros(t)))
	}
	bounds[4] = len(b)
	b = appendArrayHeader(b, oidBool, len(rows.livemode))
	for _, l := range rows.livemode {
		b = binary.BigEndian.AppendUint32(b, 1)
		if l {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	bounds[5] = len(b)
	b = appendTextArray(b, rows.accounts)
	bounds[6] = len(b)
	p.buf = b
	p.values = append(p.values[:0], b[bounds[0]:bounds[1]], b[bounds[1]:bounds[2]], b[bounds[2]:bounds[3]],
		b[bounds[3]:bounds[4]], b[bounds[4]:bounds[5]], b[bounds[5]:bounds[6]])
	return p.values
}

// appendArrayHeader writes a one-dimensional array header without NULLs.
func appendArrayHeader(b []byte, elemOID uint32, n int) []byte {
	b = binary.BigEndian.AppendUint32(b, 1) // dimensions
	b = binary.BigEndian.AppendUint32(b, 0) // no NULLs
	b = binary.BigEndian.AppendUint32(b, elemOID)
	b = binary.BigEndian.AppendUint32(b, uint32(n)) // length
	return binary.BigEndian.AppendUint32(b, 1)      // lower bound
}

// appendTextArray writes a text[] of elems, each as its length and bytes.
func appendTextArray[T string | []byte](b []byte, elems []T) []byte {
	b = appendArrayHeader(b, oidText, len(elems))
	for _, e := range elems {
		b = binary.BigEndian.AppendUint32(b, uint32(len(e)))
		b = append(b, e...)
	}
	return b
}

// postgresEpoch is where Postgres counts timestamps from.
var postgresEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// timestampMicros is a timestamp (without time zone, UTC wall time) in
// Postgres's binary form: microseconds since 2000-01-01.
func timestampMicros(t time.Time) int64 {
	return t.UTC().Sub(postgresEpoch).Microseconds()
}
