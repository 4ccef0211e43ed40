// Package anon is full-domain generalisation of microdata: the tables and
// hierarchies (ARX's CSV layout), the privacy models (k-anonymity; distinct,
// entropy and recursive-(c,l) l-diversity; t-closeness with equal, ordered
// and hierarchical distance), record suppression under a limit, the quality
// metrics (ARX's non-uniform entropy, loss, discernibility, average class
// size) and the search for the optimal transformation over the lattice of
// generalisation levels.
//
// # Representation
//
// A [Table] is columnar: every column is a dictionary of distinct strings and
// one int32 code per row, so a million rows of ten attributes cost 40 MB of
// codes and no per-cell objects. A hierarchy maps each code of a
// quasi-identifier to its code at every level, so generalising is a table
// lookup. Equivalence classes of a transformation are computed from the
// classes of a transformation one level finer (roll-up), which is what makes
// evaluating all 12,960 nodes of the Adult lattice cheap.
//
// # Semantics
//
// Where ARX defines a term, this package means the same thing, so that
// ARX's published test values are this package's tests (see anon_test.go
// and docs/export.md): a transformation is anonymous when the records in
// classes that violate a privacy model number at most the suppression
// limit times the row count, and those records are suppressed.
package anon
