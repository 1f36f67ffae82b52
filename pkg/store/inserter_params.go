package store

import (
	"encoding/binary"
	"time"
)

// Postgres type OIDs of the batch insert's array elements.
const (
	oidBool      = 16
	oidBytea     = 17
	oidText      = 25
	oidTimestamp = 1114
	oidUUID      = 2950
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

// encode returns the eight parameters of insertBatch for rows, in binary
// format. They are valid until the next call.
func (p *batchParams) encode(rows eventRows) [][]byte {
	if cap(p.buf) > maxKeptParamBytes {
		p.buf = nil
	}
	size := 8 * 20
	for i := range rows.ids {
		size += 8*4 + 16 + 8 + 1 + len(rows.ids[i]) + len(rows.types[i]) + len(rows.payloads[i]) + len(rows.accounts[i]) +
			len(rows.traceparents[i])
	}
	if cap(p.buf) < size {
		p.buf = make([]byte, 0, size)
	}
	b := p.buf[:0]
	var bounds [9]int
	b = appendUUIDArray(b, rows.keys)
	bounds[1] = len(b)
	b = appendTextArray(b, rows.ids)
	bounds[2] = len(b)
	b = appendTextArray(b, rows.types)
	bounds[3] = len(b)
	b = appendArray(b, oidBytea, rows.payloads)
	bounds[4] = len(b)
	b = appendArrayHeader(b, oidTimestamp, len(rows.received))
	for _, t := range rows.received {
		b = binary.BigEndian.AppendUint32(b, 8)
		b = binary.BigEndian.AppendUint64(b, uint64(timestampMicros(t)))
	}
	bounds[5] = len(b)
	b = appendArrayHeader(b, oidBool, len(rows.livemode))
	for _, l := range rows.livemode {
		b = binary.BigEndian.AppendUint32(b, 1)
		if l {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	bounds[6] = len(b)
	b = appendTextArray(b, rows.accounts)
	bounds[7] = len(b)
	b = appendNullableTextArray(b, rows.traceparents)
	bounds[8] = len(b)
	p.buf = b
	p.values = p.values[:0]
	for i := range 8 {
		p.values = append(p.values, b[bounds[i]:bounds[i+1]])
	}
	return p.values
}

// appendArrayHeader writes a one-dimensional array header without NULLs.
func appendArrayHeader(b []byte, elemOID uint32, n int) []byte {
	return appendArrayHeaderNulls(b, elemOID, n, false)
}

// appendArrayHeaderNulls writes a one-dimensional array header, saying
// whether the array holds a NULL.
func appendArrayHeaderNulls(b []byte, elemOID uint32, n int, nulls bool) []byte {
	b = binary.BigEndian.AppendUint32(b, 1) // dimensions
	if nulls {
		b = binary.BigEndian.AppendUint32(b, 1)
	} else {
		b = binary.BigEndian.AppendUint32(b, 0)
	}
	b = binary.BigEndian.AppendUint32(b, elemOID)
	b = binary.BigEndian.AppendUint32(b, uint32(n)) // length
	return binary.BigEndian.AppendUint32(b, 1)      // lower bound
}

// appendTextArray writes a text[] of elems, each as its length and bytes.
func appendTextArray[T string | []byte](b []byte, elems []T) []byte {
	return appendArray(b, oidText, elems)
}

// appendArray writes an array of elems of the type elemOID whose binary
// form is the bytes themselves (text, bytea).
func appendArray[T string | []byte](b []byte, elemOID uint32, elems []T) []byte {
	b = appendArrayHeader(b, elemOID, len(elems))
	for _, e := range elems {
		b = binary.BigEndian.AppendUint32(b, uint32(len(e)))
		b = append(b, e...)
	}
	return b
}

// appendNullableTextArray writes a text[] of elems in which "" is NULL.
func appendNullableTextArray(b []byte, elems []string) []byte {
	nulls := false
	for _, e := range elems {
		nulls = nulls || e == ""
	}
	b = appendArrayHeaderNulls(b, oidText, len(elems), nulls)
	for _, e := range elems {
		if e == "" {
			b = binary.BigEndian.AppendUint32(b, 0xFFFFFFFF) // length -1: NULL
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(e)))
		b = append(b, e...)
	}
	return b
}

// appendUUIDArray writes a uuid[] of ids in their text form.
func appendUUIDArray(b []byte, ids []string) []byte {
	b = appendArrayHeader(b, oidUUID, len(ids))
	for _, id := range ids {
		b = binary.BigEndian.AppendUint32(b, 16)
		b = append(b, parseUUID(id)...)
	}
	return b
}

// parseUUID is the 16 bytes of a uuid's canonical text (EventKey's).
func parseUUID(id string) []byte {
	var u [16]byte
	j := 0
	for i := 0; i < len(id) && j < 32; i++ {
		c := id[i]
		if c == '-' {
			continue
		}
		u[j/2] |= unhex(c) << (4 * (1 - j%2))
		j++
	}
	return u[:]
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return 0
}

// postgresEpoch is where Postgres counts timestamps from.
var postgresEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// timestampMicros is a timestamp (without time zone, UTC wall time) in
// Postgres's binary form: microseconds since 2000-01-01.
func timestampMicros(t time.Time) int64 {
	return t.UTC().Sub(postgresEpoch).Microseconds()
}
