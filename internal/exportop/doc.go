// Package exportop is the governed release of anonymised data: the
// kernel operation behind POST /v1/exports and `airlock export`, and the
// registry of what each recipient has received.
//
// A release names a dataset, a destination (organisation and
// jurisdiction) and a method: a k-anonymous (optionally l-diverse) full-
// domain generalisation by [anon], or a DP synthetic table by [synth]. It
// is allowed when the owner's export controls (exports.yaml: per tier,
// per destination, which methods within which bounds) list it, Cedar
// allows action "export" with context.export, the caller is the owner's
// steward or acts under an agreement with the export action, the licence
// ends before the agreement does, and, for k-anonymous releases, the new
// release joined with every earlier one to the same recipient organisation
// still leaves every record among at least k (a recipient who holds two
// generalisations of the same records can intersect their classes).
// Synthetic releases charge ρ to the dataset's export budget in the
// kernel's ledger.
//
// Each release is a signed record (the file's SHA-256, method and
// parameters, levels and hierarchy digests, the risk report, the licence
// as ODRL with DUO codes, an OpenLineage RunEvent) kept in the registry
// under the node's data directory; `airlock export verify` checks a file
// against its record offline with the node's public key.
package exportop
