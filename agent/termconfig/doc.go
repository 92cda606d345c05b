// Package termconfig is the terminal configuration document: the typed form of the body of a
// `config.apply` command, its validation, the factory configuration, and its durable store.
//
// The TMS always sends the whole document, never a patch, so the terminal's configuration is
// exactly one version of one document and the TMS can tell which by its number. A field left
// out of the CBOR body is its zero value (not the factory value): encoding omits zero values,
// so "absent" and "zero" must mean the same thing for a document to survive a round trip.
//
// Documents handed out by this package (Store.Active, Store.Previous, subscriptions) are
// shared and must be treated as read-only; Clone gives a private copy.
//
// docs/terminal-config.md describes every field; a test keeps the two in step.
package termconfig
