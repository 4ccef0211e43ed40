// Package synth generates differentially private synthetic tables in the
// manner of MST (McKenna, Miklau and Sheldon 2021, private-pgm's
// mechanisms/mst.py): noisy one-way marginals, a maximum spanning tree of
// attribute pairs chosen with the exponential mechanism, noisy two-way
// marginals on the tree's edges, a tree-structured model fitted to them,
// and rows sampled from the model.
//
// # Privacy
//
// The budget is ρ-zCDP, from (ε, δ) by the tight conversion of [dp]
// (CKS20), split in thirds as MST does: the one-way marginals (L2
// sensitivity √d over d attributes) and the two-way marginals (√(d−1)) get
// exact discrete Gaussian noise from [dp.Sampler], and the d−1 edge choices
// are exponential mechanisms of ε = √(8(ρ/3)/(d−1)) each (ε²/8-zCDP,
// bounded range), sampled exactly by rejection with [dp.Sampler.BernoulliExp].
// Everything after the measurements (compression, fitting, sampling) is
// post-processing.
//
// # Departures from private-pgm
//
// private-pgm fits the measurements with mirror descent over the graphical
// model. On a tree, this package instead rakes each edge's noisy table
// (clipped at zero) to the one-way estimates of its two ends and samples
// along the tree from the root, which is consistent on every edge and
// cheap, but weights the measurements differently; the utility report says
// how close the result is.
package synth
