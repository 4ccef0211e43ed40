package share

import (
	"maps"
	"testing"
)

// released is every event code ever shipped. Codes are append-only: add a
// line here for a new code; never change or remove one.
var released = map[string]string{
	"AL0100W": "authn run refused",
	"AL1000I": "sql.query run allowed",
	"AL1000W": "sql.query run refused",
	"AL1001I": "sql.query plan allowed",
	"AL1001W": "sql.query plan refused",
	"AL1002W": "sql.query describe refused",
	"AL1100I": "catalog.list run allowed",
	"AL1100W": "catalog.list run refused",
	"AL1101I": "catalog.read run allowed",
	"AL1101W": "catalog.read run refused",
	"AL1102I": "catalog.repeat run allowed",
	"AL1200I": "session run allowed",
	"AL1200W": "session run refused",
	"AL1300I": "audit.read run allowed",
	"AL1300W": "audit.read run refused",
	"AL1301I": "metrics.read run allowed",
	"AL1301W": "metrics.read run refused",
	"AL1400I": "agreement.revoke run allowed",
	"AL1400W": "agreement.revoke run refused",
	"AL1500I": "charge.reserve run allowed",
	"AL1501I": "state.intent run allowed",
	"AL1600W": "peer.request run refused",
	"AL1601W": "audit.witness run refused",
	"AL1700I": "export.release run allowed",
	"AL1700W": "export.release run refused",
	"AL1701I": "export.list run allowed",
	"AL1701W": "export.list run refused",
	"AL1800I": "collab.query run allowed",
	"AL1800W": "collab.query run refused",
	"AL1801I": "collab.contribute run allowed",
	"AL1801W": "collab.contribute run refused",
	"AL1802W": "collab.step run refused",
	"AL1900I": "secagg.round run allowed",
	"AL1900W": "secagg.round run refused",
	"AL1901I": "secagg.contribute run allowed",
	"AL1901W": "secagg.contribute run refused",
	"AL1902I": "secagg.step run allowed",
	"AL1902W": "secagg.step run refused",
}

func TestEventCodesAreAppendOnly(t *testing.T) {
	got := EventCodes()
	for code, meaning := range released {
		if got[code] != meaning {
			t.Errorf("released code %s meant %q, now %q: codes never change meaning", code, meaning, got[code])
		}
	}
	if len(got) != len(released) {
		t.Errorf("%d codes, %d released: add new codes to the released list", len(got), len(released))
	}
	if !maps.Equal(got, released) {
		t.Errorf("codes differ from the released list:\n%v", got)
	}
}
