package pinpademu

import "github.com/posagent/posagent/keystore/tr31"

// blockHeader is what the pad takes from a TR-31 key block header.
type blockHeader struct {
	usage         string // "K0", "P0", "M3", …
	algorithm     byte   // 'T', 'A', …
	modeOfUse     byte   // 'B', 'E', 'D', 'C', 'G', 'V', 'N', …
	exportability byte
}

// unwrapKeyBlock checks and unwraps a TR-31 key block with kbpk. Any error means the block is
// refused with BAD_KEY_BLOCK: malformed, unsupported version, a KBPK of the wrong kind for the
// version, a MAC that does not verify, a key length the block does not allow.
func unwrapKeyBlock(kbpk []byte, block string) (blockHeader, []byte, error) {
	h, key, err := tr31.Unwrap(kbpk, block)
	if err != nil {
		return blockHeader{}, nil, err
	}
	return blockHeader{usage: h.Usage, algorithm: h.Algorithm, modeOfUse: h.ModeOfUse, exportability: h.Exportability}, key, nil
}
