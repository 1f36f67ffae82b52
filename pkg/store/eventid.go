package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"

	"github.com/google/uuid"
	"github.com/tidwall/gjson"
)

// EventKey is the row id of the Stripe event stripeEventID created at
// created (Stripe's `created`, whole seconds): shaped as a UUIDv7, its
// first 48 bits are created in milliseconds and the other 74 a SHA-256 of
// the event id. webhook_events is partitioned by range of id, so an
// event's id names its partition (one per day of `created`), and the same
// event always has the same id, which the primary key (the partition key)
// keeps unique: a redelivery or a reconciled copy, whenever it comes, is a
// duplicate, in whichever partition. Stripe never changes an event's
// `created`. A created before 1970 or past the 48 bits counts as the Unix
// epoch. The SQL function sw_event_id (migration 00011) computes the same.
func EventKey(created time.Time, stripeEventID string) string {
	var u [16]byte
	ms := uint64(0)
	if s := created.Unix(); s > 0 && s < maxCreated {
		ms = uint64(s) * 1000
	}
	binary.BigEndian.PutUint64(u[0:8], ms<<16) // the first 6 bytes
	h := sha256.Sum256([]byte(stripeEventID))
	u[6] = 0x70 | h[0]&0x0f
	u[7] = h[1]
	u[8] = 0x80 | h[2]&0x3f
	copy(u[9:], h[3:10])
	return formatUUID(u)
}

// maxCreated is the first second whose milliseconds need more than 48
// bits (in the year 10889).
const maxCreated = (1 << 48) / 1000

// EventID is the row id of the event payload holds, by its `id` and
// `created` (EventKey).
func EventID(payload []byte) string {
	return EventKey(payloadCreated(payload), gjson.GetBytes(payload, "id").Str)
}

// payloadCreated is the payload's `created`, the Unix epoch when it has no
// numeric one.
func payloadCreated(payload []byte) time.Time {
	if c := gjson.GetBytes(payload, "created"); c.Type == gjson.Number {
		return time.Unix(c.Int(), 0)
	}
	return time.Unix(0, 0)
}

// idFloor is the lowest row id of the events created from t on: the
// lower bound of the partition of t's day, or of a page from t.
func idFloor(t time.Time) string {
	var u [16]byte
	binary.BigEndian.PutUint64(u[0:8], uint64(t.UnixMilli())<<16)
	return formatUUID(u)
}

// idSpan returns the lowest and the highest row id of the days (UTC, as
// the partitions are) that ids fall in, for a statement over many events
// to name the range its ids lie in: with the range given as parameters,
// Postgres plans only the partitions that hold it, rather than every
// partition, each time the statement is planned. Whole days, so that the
// range never looks selective within a partition: the planner still looks
// each id up rather than scanning the range. If an id is not a uuid the
// span is every id (and the statement itself says what is wrong with it).
func idSpan(ids []string) (lo, hi string) {
	var low, high uint64
	for i, id := range ids {
		ms, ok := idMillis(id)
		if !ok {
			return formatUUID([16]byte{}), formatUUID(maxUUID)
		}
		if i == 0 || ms < low {
			low = ms
		}
		if i == 0 || ms > high {
			high = ms
		}
	}
	const day = 24 * 60 * 60 * 1000
	var first, last [16]byte
	binary.BigEndian.PutUint64(first[0:8], (low-low%day)<<16)
	last = maxUUID
	if end := high - high%day + day - 1; end < 1<<48 {
		binary.BigEndian.PutUint64(last[0:8], end<<16|0xffff)
	}
	return formatUUID(first), formatUUID(last)
}

// idMillis is the Stripe `created` a row id holds (EventKey), in
// milliseconds; ok is false for an id that is not a uuid.
func idMillis(id string) (ms uint64, ok bool) {
	u, err := uuid.Parse(id)
	if err != nil {
		return 0, false
	}
	return binary.BigEndian.Uint64(u[0:8]) >> 16, true
}

var maxUUID = [16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func formatUUID(u [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], u[10:16])
	return string(b[:])
}
