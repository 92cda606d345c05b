// Package escpos drives an ESC/POS receipt printer over a serial.Port.
//
// A receipt is a Job: lines of styled text (justification, emphasis, underline, 1–8×
// size), feeds, QR codes (GS ( k), CODE128 barcodes (GS k), raster images (GS v 0, dithered
// to one bit) and a cut (GS V), built with chained methods and encoded as a stream — images
// are dithered row by row straight into the port.
//
//	job := escpos.NewJob().Align(escpos.Center).Bold(true).Line("ТОО «Алма»").Bold(false).
//		Line("收据 № 42").QR(url, escpos.QROptions{}).Cut()
//	err := printer.Print(ctx, job)
//
// # Done means the printer said so
//
// After each element the driver sends GS ( H fn=48, the process ID response: the printer
// answers 37 22 d1 d2 d3 d4 00 once it has processed everything before it, so an answer
// means "printed up to here". IDs are four digits from a rolling counter; an answer confirms
// its element and every one before it (the printer works in order), so a lost answer costs
// nothing if a later one arrives. Print returns nil only once the last element is
// confirmed; if that answer does not come, the driver reads the status and asks again.
// Options.CheckpointBytes spaces the confirmations out to save line time (11 bytes each).
//
// # Stops, and resuming exactly once
//
// The real-time status (DLE EOT 1..4, answered on reception even while the printer holds the
// flow off or is offline) is read before every job — a job does not start with the paper out
// or the cover open — and after it (LastStatus), and during a job whenever it makes no
// progress for PollInterval. When the printer has stopped (paper out, cover open, an error)
// or stops answering, the driver clears the printer's buffers (DLE DC4 fn=8, answered
// 37 25 00) so that nothing half-sent prints by itself once paper is loaded, and returns a
// *JobError with the number of confirmed elements. The job keeps that position; Resume sends
// ESC @ and the elements from there on, each re-stating the style it needs. Paper out is
// detected before a line is printed, so that line and the rest come out exactly once. A cover
// opened mid-line, lost confirmations (silence, unplug) or CheckpointBytes > 0 can print an
// element twice: never fewer than once.
//
// Status answers are read twice and believed only if both reads agree, because a noise byte
// can look like a status byte. Every status byte has bits 1 and 4 set and bits 0 and 7
// clear, which tells it apart from XON (0x11), XOFF (0x13) and the 0x37 header of the framed
// answers; anything else is counted as garbage and skipped, and the parser resynchronises on
// the next byte that starts something.
//
// # Flow control
//
// The printer holds the flow off with XON/XOFF, which the driver handles itself — open the
// port without flow control (serial.Config Flow "none"): a port doing XON/XOFF would block
// the real-time status requests the driver must send while the printer holds off. Writes
// are also paced to Options.Baud, never more than Window bytes ahead of the wire, so an XOFF
// takes effect within Window plus one 32-byte write; the printer's XOFF threshold must leave
// more room than that (to confirm per model; the emulator sends XOFF with 512 bytes free). An XOFF
// followed by neither progress nor another XOFF for PollInterval is checked against the
// status: if the printer is fine the XOFF is taken for noise, since a printer whose buffer
// is still full repeats XOFF as soon as more data arrives. Streaming this way keeps the line
// about 97% busy at 115200 baud (BenchmarkStreamingThroughput).
//
// Real-time command sequences (DLE EOT/ENQ/DC4) are executed by printers wherever they
// appear in the stream, so the driver never sends them as data: text has no control
// characters, QR and barcode data must be printable, and a raster byte that would complete
// such a sequence gets one more black dot.
//
// # Character sets (to be confirmed on each printer model)
//
// Cyrillic goes through the single-byte tables in Model.Pages (ESC t n); Chinese through the
// printer's GB18030 font (FS & to enter, FS . to leave), which also takes the CJK
// punctuation and full-width forms. The table number and the Chinese mode in effect after
// ESC @ depend on the printer's settings, so the driver selects both explicitly before the
// first character that needs them. The Kazakh letters Ә Ғ Қ Ң Ө Ұ Ү Һ І are in neither CP866
// nor WPC1251 (WPC1251 has only І і): a printer whose Pages include KZ-1048 prints them as
// they are; otherwise they become the Russian letters Kazakh readers expect in their place
// (Ә→А, Ғ→Г, Қ→К, Ң→Н, Ө→О, Ұ Ү→У, Һ→Х, І→I), and ₸ becomes "тг". Model.TextWidth counts
// columns the same way, Chinese characters taking two.
//
// What the models the product names do is to be confirmed on each hardware revision before
// a board profile relies on it — first of all whether the built-in printer is reachable as
// ESC/POS on a serial port at all, rather than only through the vendor's SDK:
//
//	model                 paper  Cyrillic (ESC t)          KZ-1048     GB18030 font    DLE DC4 8
//	Epson TM-T88V, TM-T20 80 mm  17 CP866, 46 WPC1251 (1)  not listed  Chinese models  yes (1)
//	Wiseasy WPOS-3        58 mm  to confirm                to confirm  to confirm      to confirm
//	Ingenico T3           58 mm  to confirm                to confirm  to confirm      to confirm
//	Feitian F20           58 mm  to confirm                to confirm  to confirm      to confirm
//	(1) per Epson's ESC/POS reference; Chinese-made printers often copy the Epson numbers.
//
// A printer without DLE DC4 fn=8 (Model.NoClearBuffers) gets DLE ENQ 2 instead, whose effect
// cannot be confirmed; a printer keeping its buffer across a paper change would then print
// the unconfirmed tail twice.
package escpos
