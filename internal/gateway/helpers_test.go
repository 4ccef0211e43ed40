package gateway

import (
	"math"
	"math/rand/v2"

	"github.com/airlock-dev/airlock/internal/dp"
	"github.com/airlock-dev/airlock/internal/engine"
)

func newTestSampler() *dp.Sampler {
	var key [32]byte
	key[0] = 42
	return dp.NewSampler(rand.NewChaCha8(key))
}

func dpGaussianSigma2(l0 int, linf, rho float64) float64 {
	return dp.GaussianSigma2(math.Sqrt(float64(l0))*linf, rho)
}

func engineResult(rows [][]any) *engine.Result { return &engine.Result{Rows: rows} }
