// Package handler applies Stripe events to the platform's tables. Each
// event type with an effect has one file, and registry.go maps types to
// handlers; every other type is stored and marked processed without
// effect. A handler runs inside its event's processing transaction
// (package jobs) and writes only through named store.Tx operations.
//
// # Event types
//
//   - account.updated: upserts stripe_connected_accounts from the account
//     object: charges_enabled, payouts_enabled, details_submitted,
//     requirements, and the capabilities map. An object without
//     capabilities, or with null, leaves the stored ones as they are; a
//     present map, even {}, is the whole set.
//   - capability.updated: sets that capability's status on the account,
//     creating the row (booleans false) if the account is new.
//   - account.external_account.created and .updated: upsert the bank
//     account or card: id, object, last4, bank name or brand, currency,
//     status, default_for_currency; never full numbers.
//   - account.external_account.deleted: the same, and sets deleted_at.
//   - account.application.deauthorized: marks the connected account
//     disconnected, deauthorized_at set to the event's created time
//     (creating the row, booleans false, if the account is new). The
//     account is the event's top-level account; data.object is the
//     platform's application.
//   - account.application.authorized: clears deauthorized_at (the account
//     is connected again).
//   - anything else, and with STRIPE_LIVEMODE live or test an event of the
//     other mode: marked processed without effect.
//
// # Out of order
//
// Stripe does not deliver in order. The created time of the newest event
// applied is kept per object (the account's own fields, each capability,
// each external account, the account's authorization), and an older event
// never overwrites a newer one there. An older update to one capability
// still applies when a newer one touched another. An older authorized
// never undoes a newer deauthorized, nor the reverse; those two carry no
// previous_attributes, so equal seconds apply in processing order.
//
// # Same-second ties
//
// created has one-second resolution, and Stripe sends several updates of
// one account within a second (onboarding, verification), concurrently
// and in any order. Each object therefore also keeps the
// data.previous_attributes (of the fields kept) of the event that wrote
// it, and an event of that same second (a tie) is settled by them. How,
// by the settled label of same_second_ties_total{object,settled}:
//
//   - same_state: its new values already are the stored state; nothing to
//     do.
//   - same_event: its previous values are those the stored event had: it
//     is that event again (a replay after the row changed otherwise);
//     applied.
//   - chained: its previous values are the stored state: it came later;
//     applied.
//   - earlier: its new values are the stored event's previous values: it
//     came earlier; ignored.
//   - deletion: one side is an external account's deletion. A deletion is
//     applied; a creation or update of its second is not (an update of a
//     later second changes its fields but never clears deleted_at).
//   - kept, or resync with STRIPE_API_KEY: anything else. The events do not
//     chain (one between them is missing, or one has no
//     previous_attributes), or chain both ways (a change undone within the
//     second). The stored state, applied first, is kept.
//
// Without STRIPE_API_KEY a kept tie stays until the object's next event or
// `worker resync`. With the key, the event's transaction also records a
// resync request for the account (resync_requests), and one replica
// resyncs such accounts from Stripe's API once STRIPE_RESYNC_DEBOUNCE has
// passed since the first request, so that a burst settles first (package
// reconcile); the snapshot, taken in a later second, writes Stripe's
// current state over the tied objects and deletes the request, and a
// failed resync is tried again after another debounce. Two events of one
// object in one second, delivered in either order, thus leave the later
// one's state, and a replay of the earlier one changes nothing
// (ties_test.go). Each tie is counted once, after its transaction commits;
// an account.updated counts one per capability it lists (usually
// same_state). `worker replay` and the console settle ties the same way
// but request no resync.
//
// # Adding an event type
//
// Write <type>.go here with a [Func] that decodes e.Object and calls a
// named store.Tx operation (add one to pkg/store if none fits), and add one
// line to registry.go. Handlers never open transactions or run queries of
// their own. The row of the event's connected account exists and is locked
// by the time the handler runs ([AccountIn]), so an operation on that
// account reads it without another round trip. Pass the event's
// e.Previous (its data.previous_attributes) to the store operation: it
// settles ties with events of the same second. Reconcile lists the types
// the registry holds ([Types]), so a new type is reconciled too.
package handler
