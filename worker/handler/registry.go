package handler

// registry maps each Stripe event type with an effect to its handler. To
// handle a new type: add its file and one line here. Every other type is
// stored and marked processed without effect. When a handler runs, the row
// of its event's connected account (the envelope's `account`) exists and is
// locked for its transaction: Tx.ApplyAccount and the like read it without
// another round trip.
var registry = map[string]Func{
	"account.updated":                  accountUpdated,
	"capability.updated":               capabilityUpdated,
	"account.external_account.created": externalAccountChanged,
	"account.external_account.updated": externalAccountChanged,
	"account.external_account.deleted": externalAccountDeleted,
	"account.application.authorized":   accountApplication,
	"account.application.deauthorized": accountApplication,
}
