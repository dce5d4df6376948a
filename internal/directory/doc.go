// Package directory is the health-directory core of the hub: national
// identifiers of health professionals (RPPS, ADELI, idNat), a streaming reader
// for the public Annuaire Santé bulk extract, and the in-memory index consulted
// on the hot path of every policy decision (may this idNat log in, be invited,
// be found?).
//
// The package holds no persistence: an importer reads the extract with
// ReadExtract, stores what it wants, feeds an IndexBuilder and publishes the
// result through an Atomic so readers switch from the old index to the new one
// in a single step.
//
// Activity status. The public extract lists only practitioners who are
// currently registered; nobody is "inactive" inside it. ReadExtract therefore
// marks every practitioner it emits as Active, and deciding inactivity (a
// practitioner known from an earlier full import who is absent from the new
// one) is the importer's job, done by comparing the two sets. The index keeps
// the Active flag so a policy can tell "unknown" from "known but no longer
// registered".
package directory
