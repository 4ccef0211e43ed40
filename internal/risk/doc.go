// Package risk estimates the re-identification risk of microdata from its
// equivalence classes (the records sharing their quasi-identifiers):
// prosecutor, journalist and marketer risk in El Emam's terms, sample
// uniqueness, and population uniqueness by the Zayatz, Pitman and SNB
// models with Dankar et al.'s rule for choosing among them.
//
// The definitions follow ARX (arx-deidentifier/arx, risk/ModelZayatz,
// ModelPitman, ModelSNB, RiskModelPopulationUniqueness), so that ARX's
// published test values are this package's tests; docs/export.md lists
// where this package knowingly departs from ARX.
package risk
