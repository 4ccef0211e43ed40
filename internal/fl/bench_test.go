package fl

import (
	"testing"

	"github.com/airlock-dev/airlock/internal/dp"
)

// BenchmarkFLRound is one FedAvg round on the Adult split over three
// in-process participants (17,792 / 2,873 / 3,464 rows; logistic
// regression, 1 local epoch, batch 256): local training plus a plain sum
// of the updates (no protection), against the same round through secure
// aggregation, and with DP-SGD in each participant as well.
func BenchmarkFLRound(b *testing.B) {
	s, _, _, parts := adultSplit(b)
	m := Model{Kind: Logistic, Dim: s.Dim()}
	base := Plan{Model: m, Local: Local{Epochs: 1, LR: 0.5, Batch: 256}, Unit: NoDP, T: 2}
	dpsgd := base
	dpsgd.Unit, dpsgd.Clip, dpsgd.Noise = Record, 1, 8
	b.Run("plain-sum", func(b *testing.B) {
		for b.Loop() {
			sum := make([]uint32, base.Length())
			for _, d := range parts {
				in, err := base.Contribute(m.Init(0), d, nil)
				if err != nil {
					b.Fatal(err)
				}
				for i, v := range in {
					sum[i] += v
				}
			}
			if _, _, err := base.Apply(m.Init(0), sum, len(parts)); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, c := range []struct {
		name string
		plan Plan
	}{{"secure-aggregation", base}, {"secure-aggregation+dp-sgd", dpsgd}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := c.plan.RoundLocal(m.Init(0), parts, dp.NewSampler(nil)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
