// Package export owns the file format of `cryptvol export` and `cryptvol
// import`: a volume's LUKS2 header and ciphertext, never plaintext, with a
// manifest saying what volume it was and which KMIP key opens it, and a
// SHA-256 over everything before it. It reads and writes streams only;
// package volume decides what goes in and what is made of it.
//
// The format, version 1 (every integer big-endian):
//
//	magic     "CRYPTVOL-EXPORT\n" (16 bytes)
//	manifest  u32 length (1 to MaxManifest), then that many bytes of JSON
//	          (Manifest; unknown fields refused)
//	blocks    'B', u64 offset, u32 length (1 to the manifest's block_size),
//	          the bytes: the volume's blocks that are not all zero, in
//	          increasing, non-overlapping order, inside size_bytes
//	end       'E', then the SHA-256 of every byte before the 'E'
//
// Blocks of zeros are left out, so that a thin volume's unwritten blocks
// (which read as zeros) cost nothing: an importer writes zeros where no
// block came. Anything read is untrusted: a Reader accepts exactly what a
// Writer makes and says what is wrong with anything else, and nothing it
// returned may be trusted before Next has returned io.EOF (the checksum).
//
// Concurrency: a Reader or a Writer is used by one goroutine.
package export
