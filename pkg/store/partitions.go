package store

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
)

// webhook_events is partitioned by range of id: one partition a day of the
// events' Stripe `created` (EventKey), named webhook_events_pYYYYMMDD,
// after webhook_events_past (every id before the oldest day) and before
// webhook_events_future (every id after the newest). The worker makes the
// days' partitions ahead (EnsurePartitions); retention drops whole days
// (ExpireEvents). Both run SQL functions of migration 00011.

// partitionName matches the name of a day's partition.
var partitionName = regexp.MustCompile(`^webhook_events_p(\d{8})$`)

// EnsurePartitions makes the partitions of the days from from to to that
// have none, moving into each the rows the past or future partition held
// for it, and returns how many it made. Making them detaches the past or
// future partition, which locks webhook_events for the milliseconds it
// takes: deliveries wait, after at most lockWait for the transactions
// before (then it fails, to try again next run). Concurrent callers take
// turns.
func (s *Store) EnsurePartitions(ctx context.Context, from, to time.Time) (int, error) {
	var made int
	err := s.partitionTx(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT sw_make_event_partitions('webhook_events', $1::date, $2::date)",
			day(from), day(to)).Scan(&made)
	})
	if err != nil {
		return 0, fmt.Errorf("store: make partitions from %s to %s: %w", day(from).Format(time.DateOnly),
			day(to).Format(time.DateOnly), err)
	}
	return made, nil
}

// partitionTx runs fn in a transaction that waits at most lockWait for a
// lock.
func (s *Store) partitionTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return s.withConn(ctx, func(conn *pgx.Conn) error {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = '%dms'", lockWait.Milliseconds())); err != nil {
				return err
			}
			return fn(tx)
		})
	})
}

// dayPartition names the partition of the day of the event with row id
// webhookID (EventKey): if a table of that name exists, it holds the
// event's row if any row does. ok is false for an id that is not a uuid.
func dayPartition(webhookID string) (name string, ok bool) {
	ms, ok := idMillis(webhookID)
	if !ok {
		return "", false
	}
	return "webhook_events_p" + time.UnixMilli(int64(ms)).UTC().Format("20060102"), true
}

// day is t's UTC date, at midnight.
func day(t time.Time) time.Time {
	return t.UTC().Truncate(24 * time.Hour)
}

// Expired is what ExpireEvents removed.
type Expired struct {
	// Partitions are the days dropped, and Events the rows they held.
	Partitions []string
	Events     int64
	// Kept are the events of those days not processed yet (waiting,
	// failing, dead): moved to the past partition, never dropped.
	Kept int64
	// Past are the processed rows of the past partition deleted.
	Past int64
}

// ExpireEvents removes the events Stripe created before before (whole days
// only: a day's partition goes once its last instant is older than before),
// except those not processed yet, which move to the past partition first;
// and it deletes the processed rows of the past partition stored before
// before. Dropping a partition leaves no dead tuples to vacuum. Each day
// is its own transaction, which locks webhook_events for the milliseconds
// it takes, after waiting at most lockWait for the transactions before
// (then it fails, and the next run tries again).
func (s *Store) ExpireEvents(ctx context.Context, before time.Time) (Expired, error) {
	var ex Expired
	days, err := s.expiredPartitions(ctx, day(before))
	if err != nil {
		return ex, err
	}
	for _, p := range days {
		rows, kept, err := s.dropPartition(ctx, p)
		if err != nil {
			return ex, fmt.Errorf("store: expire %s: %w", p.name, err)
		}
		ex.Partitions = append(ex.Partitions, p.name)
		ex.Events, ex.Kept = ex.Events+rows, ex.Kept+kept
	}
	ex.Past, err = s.deleteProcessedPast(ctx, before)
	return ex, err
}

// lockWait bounds the wait for webhook_events' lock when partitions are
// made or dropped: the statements of other sessions queue behind a waiting
// lock.
const lockWait = time.Second

// expiredPartitions lists the days' partitions that end by end, oldest
// first, with their days.
func (s *Store) expiredPartitions(ctx context.Context, end time.Time) ([]partition, error) {
	var names []string
	err := s.db.WithContext(ctx).Raw(`SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'webhook_events'::regclass ORDER BY c.relname`).Scan(&names).Error
	if err != nil {
		return nil, fmt.Errorf("store: list partitions: %w", err)
	}
	var out []partition
	for _, n := range names {
		m := partitionName.FindStringSubmatch(n)
		if m == nil {
			continue
		}
		d, err := time.Parse("20060102", m[1])
		if err == nil && !d.AddDate(0, 0, 1).After(end) {
			out = append(out, partition{name: n, day: d})
		}
	}
	return out, nil
}

// partition is a day's partition of webhook_events.
type partition struct {
	name string
	day  time.Time
}

// dropPartition counts the rows of the partition p, then drops it, moving
// its unprocessed events to the past partition (sw_expire_event_partition);
// it returns the rows it held and those it kept.
func (s *Store) dropPartition(ctx context.Context, p partition) (rows, kept int64, err error) {
	err = s.withConn(ctx, func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{p.name}.Sanitize()).Scan(&rows)
	})
	if err != nil {
		return 0, 0, err
	}
	err = s.partitionTx(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT sw_expire_event_partition('webhook_events', $1::date)", p.day).Scan(&kept)
	})
	return rows, kept, err
}

// deleteProcessedPast deletes the processed events of the past partition
// stored before before, 500 at a time: the few events of days that had no
// partition of their own. (A day's partition goes by the events' Stripe
// `created`; the past partition's rows by when they were stored, so that
// an event without a `created`, or created long before it came, is kept
// the retention from then.)
func (s *Store) deleteProcessedPast(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		res := s.db.WithContext(ctx).Exec(`DELETE FROM webhook_events_past WHERE id IN (
			SELECT id FROM webhook_events_past WHERE processed AND created_at < ? LIMIT 500)`, before.UTC())
		if res.Error != nil {
			return total, fmt.Errorf("store: expire the past partition: %w", res.Error)
		}
		total += res.RowsAffected
		if res.RowsAffected < 500 {
			return total, nil
		}
	}
}
