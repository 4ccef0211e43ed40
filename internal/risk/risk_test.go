package risk

import (
	"math"
	"testing"

	"github.com/airlock-dev/airlock/internal/anon"
)

func adultHistogram(t *testing.T) Histogram {
	t.Helper()
	tab, err := anon.ReadTableFile("../anon/testdata/adult/adult.csv")
	if err != nil {
		t.Fatal(err)
	}
	sizes, err := anon.ClassSizes(tab, tab.Columns)
	if err != nil {
		t.Fatal(err)
	}
	return HistogramOf(sizes)
}

// truncated4 compares as ARX's TestRiskMetrics does: equal after
// truncation to four decimals.
func truncated4(a, b float64) bool { return int(a*10000) == int(b*10000) }

// TestARXPublishedRisks checks the Adult data (all nine attributes as
// quasi-identifiers) against arx-deidentifier/arx,
// src/test/org/deidentifier/arx/test/TestRiskMetrics.java (9f5b700403a4):
// testAverageRisk2, testHighestIndividualRisk2, testDecisionRule2.
func TestARXPublishedRisks(t *testing.T) {
	h := adultHistogram(t)
	s := SampleRisk(h, 0.2)
	if s.Average != 0.6465751607983555 {
		t.Errorf("average risk %v, ARX 0.6465751607983555", s.Average)
	}
	if s.Highest != 1 {
		t.Errorf("highest risk %v, ARX 1", s.Highest)
	}
	if s.Uniques != 0.5142895033485844 {
		t.Errorf("sample uniqueness %v, ARX 0.5142895033485844", s.Uniques)
	}
	for _, tc := range []struct {
		pi    float64
		want  float64
		model Model
	}{
		{0.1, 0.27684993883653597, Pitman},
		{0.2, 0.3577099234829125, ""},
		{0.01, 0.1446083531167384, Pitman},
		{1, 0.5142895033485844, Zayatz},
	} {
		p := PopulationRisk(h, tc.pi)
		if !truncated4(p.Uniques, tc.want) {
			t.Errorf("π=%v: population uniqueness %v (%s; zayatz %v pitman %v snb %v), ARX %v", tc.pi, p.Uniques, p.Model, p.Zayatz, p.Pitman, p.SNB, tc.want)
		}
		if tc.model != "" && p.Model != tc.model {
			t.Errorf("π=%v: model %s, want %s", tc.pi, p.Model, tc.model)
		}
		if p.Uniques > s.Uniques+1e-12 {
			t.Errorf("π=%v: population uniqueness %v above sample uniqueness %v", tc.pi, p.Uniques, s.Uniques)
		}
	}
}

func TestSampleRiskByHand(t *testing.T) {
	// Classes of sizes 1, 2, 2, 5: n = 10, u = 4.
	h := HistogramOf([]int{2, 1, 5, 2})
	s := SampleRisk(h, 0.4)
	want := Sample{Highest: 1, Lowest: 0.2, Average: 0.4, AtRisk: 0.5, Threshold: 0.4, Uniques: 0.1}
	if s != want {
		t.Fatalf("got %+v, want %+v", s, want)
	}
	if p := PopulationRisk(HistogramOf([]int{2, 3}), 0.1); p.Model != None || p.Uniques != 0 {
		t.Fatalf("no sample uniques: got %+v, want model none", p)
	}
}

func TestZayatzAtFullSample(t *testing.T) {
	// π = 1: every sample unique is a population unique.
	h := HistogramOf([]int{1, 1, 1, 2, 4})
	if got := zayatz(h, float64(h.Records())); math.Abs(got-3) > 1e-9 {
		t.Fatalf("got %v, want 3", got)
	}
}

func TestJournalistAndMarketerByHand(t *testing.T) {
	// Sample classes (f, F): (1, 4), (2, 2), (3, 10): n = 6, u = 3, ΣF = 16.
	j := JournalistRisk([]Linked{{1, 4}, {2, 2}, {3, 10}}, 0.3)
	marketer := (1.0/4 + 2.0/2 + 3.0/10) / 6
	want := Journalist{Highest: 0.5, AtRisk: 2.0 / 6, Threshold: 0.3, Marketer: marketer, Average: math.Max(3.0/16, marketer)}
	if math.Abs(j.Marketer-want.Marketer) > 1e-15 || j.Highest != want.Highest || j.AtRisk != want.AtRisk || math.Abs(j.Average-want.Average) > 1e-15 {
		t.Fatalf("got %+v, want %+v", j, want)
	}
	// With the sample as its own population, the journalist is the prosecutor.
	h := HistogramOf([]int{1, 2, 3})
	self := JournalistRisk([]Linked{{1, 1}, {2, 2}, {3, 3}}, 0.3)
	if p := SampleRisk(h, 0.3); self.Highest != p.Highest || self.Average != p.Average || self.AtRisk != p.AtRisk {
		t.Fatalf("self-population journalist %+v, prosecutor %+v", self, p)
	}
}
