//go:build race

package anon

// raceEnabled: under the race detector the Adult-sized searches (run in
// full by the ordinary suite) give way to the random-table comparisons,
// which exercise the same parallel walk.
const raceEnabled = true
