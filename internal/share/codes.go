package share

// Event codes, in the manner of Teleport's lib/events/codes.go: every
// audit entry carries the stable code of its kind and outcome, so that
// alerts and reports do not parse free text. The list is append-only: a
// code, once released, keeps its meaning forever (codes_test.go holds the
// released list). I = allowed or informational, W = refused.
var eventCodes = map[eventKey]string{
	{OpAuthenticate, Run, false}: "AL0100W",

	{OpQuery, Run, true}:       "AL1000I",
	{OpQuery, Run, false}:      "AL1000W",
	{OpQuery, Plan, true}:      "AL1001I",
	{OpQuery, Plan, false}:     "AL1001W",
	{OpQuery, Describe, false}: "AL1002W",

	{OpCatalogList, Run, true}:   "AL1100I",
	{OpCatalogList, Run, false}:  "AL1100W",
	{OpCatalogRead, Run, true}:   "AL1101I",
	{OpCatalogRead, Run, false}:  "AL1101W",
	{OpCatalogRepeat, Run, true}: "AL1102I",

	{OpSession, Run, true}:  "AL1200I",
	{OpSession, Run, false}: "AL1200W",

	{OpAuditRead, Run, true}:    "AL1300I",
	{OpAuditRead, Run, false}:   "AL1300W",
	{OpMetricsRead, Run, true}:  "AL1301I",
	{OpMetricsRead, Run, false}: "AL1301W",

	{OpRevoke, Run, true}:  "AL1400I",
	{OpRevoke, Run, false}: "AL1400W",

	{OpReserve, Run, true}: "AL1500I",
	{OpIntent, Run, true}:  "AL1501I",

	{OpPeer, Run, false}:    "AL1600W",
	{OpWitness, Run, false}: "AL1601W",

	{OpExport, Run, true}:  "AL1700I",
	{OpExport, Run, false}: "AL1700W",

	{OpExportList, Run, true}:  "AL1701I",
	{OpExportList, Run, false}: "AL1701W",

	{OpCollabQuery, Run, true}:  "AL1800I",
	{OpCollabQuery, Run, false}: "AL1800W",
	{OpCollabJoin, Run, true}:   "AL1801I",
	{OpCollabJoin, Run, false}:  "AL1801W",
	{OpCollabStep, Run, false}:  "AL1802W",

	{OpSecaggRound, Run, true}:       "AL1900I",
	{OpSecaggRound, Run, false}:      "AL1900W",
	{OpSecaggContribute, Run, true}:  "AL1901I",
	{OpSecaggContribute, Run, false}: "AL1901W",
	{OpSecaggStep, Run, true}:        "AL1902I",
	{OpSecaggStep, Run, false}:       "AL1902W",
}

type eventKey struct {
	kind    OpKind
	mode    Mode
	allowed bool
}

// EventCode is the stable code of a decision; "AL9999W"/"AL9999I" for a
// combination the list does not name (a test keeps every used one named).
func EventCode(kind OpKind, mode Mode, allowed bool) string {
	if c, ok := eventCodes[eventKey{kind, mode, allowed}]; ok {
		return c
	}
	if allowed {
		return "AL9999I"
	}
	return "AL9999W"
}

// EventCodes lists every code with its kind, mode and outcome.
func EventCodes() map[string]string {
	out := map[string]string{}
	for k, c := range eventCodes {
		outcome := "refused"
		if k.allowed {
			outcome = "allowed"
		}
		out[c] = string(k.kind) + " " + k.mode.String() + " " + outcome
	}
	return out
}
