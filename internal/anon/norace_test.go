//go:build !race

package anon

const raceEnabled = false
