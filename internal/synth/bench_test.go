package synth

import (
	"testing"

	"github.com/airlock-dev/airlock/internal/anon"
	"github.com/airlock-dev/airlock/internal/dp"
)

// BenchmarkSynthesizeAdult is MST on the Adult data (30,162 rows, 9
// attributes) at ε = 1, δ = 1e-9, with exact samplers over crypto/rand.
func BenchmarkSynthesizeAdult(b *testing.B) {
	real, err := anon.ReadTableFile("../anon/testdata/adult/adult.csv")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Synthesize(real, Config{Epsilon: 1, Delta: 1e-9}, dp.NewSampler(nil)); err != nil {
			b.Fatal(err)
		}
	}
}
