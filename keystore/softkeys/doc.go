// Package softkeys is the software key backend: the key hierarchy of a terminal whose agent
// holds its keys itself (and of the simulated board without a PIN pad), sealed at rest under a
// device root key supplied by the board.
//
// # Storage
//
// Each slot is one record of the bbolt bucket "softkeys": key = the slot number (4 bytes, big
// endian), value = nonce (12 bytes) ‖ AES-256-GCM(K, plaintext, AAD). K is derived from the
// 32-byte device root key with HKDF-SHA256 (info "posagent softkeys v1 seal"), so the root key
// itself never encrypts anything and can serve other purposes on the board. The plaintext is a
// small fixed layout: usage (1 byte) ‖ algorithm (1 byte) ‖ key. The AAD is "posagent softkeys
// v1 slot N", so a record copied to another slot does not open. A record that does not open
// (tampered, sealed by another device's root key, or decoding to something no load could have
// written) reads as an empty slot; that is logged once per record, with the slot number only.
//
// Every write goes through the store's group committer: a load is durable before it returns,
// and because bbolt commits whole transactions a power cut leaves a slot with its old key or
// its new one. Erase deletes the records in one transaction. Deleted bbolt pages are not
// overwritten on disk, but what they held is sealed: only the root key opens it.
//
// # Memory
//
// Clear keys exist in memory only while an operation runs: each load or MAC opens the records
// it needs from the database, uses them and zeroes the buffers before returning (the bbolt
// memory map holds only sealed records). Opening a record is one AES-GCM operation on a few
// dozen bytes, far cheaper than the MAC or the fsync around it, so caching clear keys would buy
// nothing and would leave them in memory for the life of the process. The one secret that
// stays resident is the sealing key's AES schedule inside the cipher.AEAD (Go's crypto/cipher
// gives no way to zero it), the same exposure as keeping the root key. Go may copy memory
// behind our back (stack growth, the garbage collector), so zeroing is best effort.
//
// # Hierarchy
//
// As on the PIN pad: slot 0 holds the transport key, written only by InjectTransport (the
// factory step); a KEK loads only under slot 0; a working key (PIK, MAK, TDK) only under a slot
// holding a KEK; nothing else unwraps anything. Loads go to slots 1..MaxSlot; on any error the
// slot keeps its previous key.
//
// LoadEncrypted takes a TDES key (8, 16 or 24 bytes) encrypted TDES-ECB under a TDES parent
// and checks its check value (3 or 4 bytes of E(K, 0…0)). An AES parent cannot do that:
// ErrWrongUsage.
//
// LoadBlock takes a TR-31 block (version B under a TDES parent, D under an AES one; the tr31
// package decides which KBPK fits which version). The header must say:
//
//	usage  role  parent     algorithm        mode of use
//	K0,K1  KEK   transport  T (TDES) or A    B, D or N: the key must be able to unwrap
//	P0     PIK   KEK        T                B, E or N: the terminal encrypts PIN blocks
//	M0,M1,M3 MAK KEK        T                C, G or N: the terminal generates MACs
//	D0     TDK   KEK        T                B, D, E or N
//
// A MAK whose mode of use is V (verify only) is refused because the backend's only MAC
// operation returns the MAC, which is generation. A usage, algorithm or mode of use outside the
// table is ErrWrongUsage; a key length the algorithm does not allow (TDES 8/16/24, AES
// 16/24/32) is ErrBadLength; anything the tr31 package rejects (malformed, unsupported
// version, bad MAC, wrong KBPK, bad key length) is ErrBadKeyBlock wrapping its error.
//
// # Errors and logs
//
// Errors wrap the keystore sentinels with a short reason and the slot numbers. Neither errors
// nor logs ever carry key material, clear or encrypted, nor data being MACed; logs carry slot,
// usage, algorithm, length and check value.
package softkeys
