package handler

// registry maps each Stripe event type with an effect to its handler. To
// handle a new type: add its file and one line here. Every other type is
// stored and marked processed without effect.
var registry = map[string]Func{
	"account.updated":                  accountUpdated,
	"capability.updated":               capabilityUpdated,
	"account.external_account.created": externalAccountChanged,
	"account.external_account.updated": externalAccountChanged,
	"account.external_account.deleted": externalAccountDeleted,
	"account.application.authorized":   accountApplication,
	"account.application.deauthorized": accountApplication,
}
