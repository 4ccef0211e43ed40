// Package psi is the two-party private join of the clean rooms: a private
// set intersection over ristretto255 with additively homomorphic payloads,
// in the manner of Google's Private Join and Compute (Ion et al. 2020).
//
// Two parties, the matcher M and the helper H, each hold items: a join key
// (an identifier, never sent) and a payload of small integers (counts and
// bounded sums, laid out in cells by the caller). One run:
//
//  1. Each party hashes its keys to the group (RFC 9380 hash-to-group,
//     domain-separated by the session) and multiplies them by its own
//     secret blinding scalar; payloads are encrypted under the joint
//     ElGamal key pk_M + pk_H, which neither party can open alone.
//  2. H re-blinds M's points with its scalar, re-randomises M's payloads
//     and shuffles them; it sends them back with its own blinded items.
//  3. M blinds H's points with its scalar. Equal doubly-blinded points are
//     equal keys; M adds the payloads of every matched pair, blind to which
//     of its own items matched (H shuffled them) and to the values (they
//     are encrypted).
//  4. Each party adds its own discrete Gaussian noise, encrypted, to the
//     summed cells; each gives a partial decryption; the receiver decodes
//     the noisy cells and nothing else.
//
// Security model: semi-honest parties (each follows the protocol and tries
// to learn more from what it sees). M learns the number of matches and the
// sizes of H's padded set; H learns the size of M's padded set; the
// receiver learns the noisy cells. Set sizes are padded with random points
// by a noisy amount, and H hides the exact number of matches from M with
// dummy matches drawn from a pool of session-derived keys M includes whole
// (H picks a noisy-sized subset), so every number a party sees is either
// random or carries noise. Key shares carry a proof of knowledge of their
// secret (no rogue keys). Outside the model: a malicious matcher can blind
// chosen keys with their own scalars and skip the pool, learning each
// one's membership exactly, and can have the helper decrypt a chosen
// combination of payloads; nothing here prevents that (docs/cleanrooms.md).
package psi
