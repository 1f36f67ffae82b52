package store

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"time"
)

// WebhookEvent is one Stripe event as delivered, stored once per event id.
type WebhookEvent struct {
	ID            string `gorm:"type:uuid;primaryKey;default:gen_random_uuid()"`
	StripeEventID string
	EventType     string
	Payload       JSON
	Processed     bool
	ProcessedAt   *time.Time
	Error         *string
	RetryCount    int
	ReceivedAt    time.Time
	CreatedAt     time.Time
	// DeadAt is set when the event's job exhausted its retries.
	DeadAt *time.Time
	// NextAttemptAt is when gocraft/work retries the failed job.
	NextAttemptAt *time.Time
	// Livemode is the event's livemode as delivered; nil for rows stored
	// before the column existed.
	Livemode *bool
}

// ConnectedAccount is the platform's view of one Stripe Connect account.
type ConnectedAccount struct {
	ID               int64 `gorm:"primaryKey"`
	StripeAccountID  string
	ChargesEnabled   bool
	PayoutsEnabled   bool
	DetailsSubmitted bool
	Requirements     JSON
	Capabilities     JSON
	// CapabilitiesEventCreated maps a capability to the Stripe `created` time
	// (unix seconds) of the newest event applied to it.
	CapabilitiesEventCreated JSON
	// AccountEventCreated is the Stripe `created` time of the newest
	// account.updated applied to the account's own fields.
	AccountEventCreated *time.Time
	// AccountEventPrevious is that event's data.previous_attributes for the
	// account's own fields (nil: it changed none, or a resync wrote them):
	// what settles a tie with another event of the same second.
	AccountEventPrevious JSON
	// CapabilitiesEventPrevious maps a capability to its status before the
	// newest event applied to it ("": it had none), for the capabilities
	// that event changed.
	CapabilitiesEventPrevious JSON
	// DeauthorizedAt is when the account disconnected from the platform
	// (the `created` time of its account.application.deauthorized); nil
	// while it is connected.
	DeauthorizedAt *time.Time
	// AuthorizationEventCreated is the Stripe `created` time of the newest
	// account.application.authorized or .deauthorized applied.
	AuthorizationEventCreated *time.Time
	CreatedAt                 time.Time
	UpdatedAt                 time.Time
}

// TableName is the table of connected accounts.
func (ConnectedAccount) TableName() string { return "stripe_connected_accounts" }

// ExternalAccount is a bank account or card of a connected account: never a
// full number, only its last four digits.
type ExternalAccount struct {
	ID                      int64 `gorm:"primaryKey"`
	StripeExternalAccountID string
	StripeAccountID         string
	Object                  string
	Last4                   *string
	BankName                *string
	Brand                   *string
	Currency                *string
	Status                  *string
	DefaultForCurrency      bool
	DeletedAt               *time.Time
	EventCreated            *time.Time
	// EventPrevious is that event's data.previous_attributes for the
	// fields kept (nil: it changed none, or a resync wrote the row).
	EventPrevious JSON
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// TableName is the table of external accounts.
func (ExternalAccount) TableName() string { return "stripe_external_accounts" }

// JSON is a jsonb value. It is sent to Postgres as text, which jsonb accepts
// under both the extended and the simple query protocol, unlike []byte.
//
// That alone does not make the services fit any connection pooler: they use
// named prepared statements (pgx's statement cache, and the ingest's batch
// insert, sw_insert_batch), so behind PgBouncer they need session pooling, or
// transaction pooling in PgBouncer 1.21 or later with max_prepared_statements
// above 0 (it then tracks protocol-level prepared statements per server
// connection). Statement pooling does not work: events are applied in
// multi-statement transactions. README "Operating it" says the same.
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
