package secagg

import (
	"fmt"
	"testing"
)

// messageBytes is the size of a participant's messages in their fixed
// encodings' lengths: keys (two 32-byte keys, a 64-byte signature), its
// shares (one 64-byte pair + 16-byte tag per peer), the masked input
// (4 bytes a value), the consent (64) and the unmasking (32 a share).
func messageBytes(p Params, survivors, dropped int) int {
	return 32 + 32 + 64 + (p.N-1)*(64+16) + 4*p.Length + 64 + 32*(survivors+dropped)
}

// BenchmarkSecureSum: a 100,000-value vector among 10 participants in one
// process, with 0 and 3 dropouts before the input, against a plain sum.
func BenchmarkSecureSum(b *testing.B) {
	for _, drop := range [][]int{nil, {2, 5, 9}} {
		b.Run(fmt.Sprintf("secagg/n=10/dropouts=%d", len(drop)), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				nt := newNet(b, 10, 6, 100_000)
				b.StartTimer()
				if _, _, err := nt.run(b, drop, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(messageBytes(Params{N: 10, Length: 100_000}, 10-len(drop), len(drop)))/1e3, "kB/node")
		})
	}
	b.Run("plain/n=10", func(b *testing.B) {
		nt := newNet(b, 10, 6, 100_000)
		for b.Loop() {
			sum := make([]uint32, 100_000)
			for i := 1; i <= 10; i++ {
				for k, v := range nt.inputs[i] {
					sum[k] += v
				}
			}
		}
		b.ReportMetric(400, "kB/node")
	})
}
