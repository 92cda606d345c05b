package hostsim

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
)

// ControlHandler is the control API of the binary (tests call the methods directly):
//
//	GET    /faults                      the fault switches in force
//	POST   /faults                      add one: {"kind":"noanswer","mti":"0200","count":1,"delay":"5s"}
//	PUT    /faults                      replace all: [ {…}, … ]
//	DELETE /faults                      clear all
//	GET    /terminals/{tid}             sign-in state, current batch, closed batches, status uploads
//	GET    /ledger/{tid}                {charged, entries, reversals}
//	GET    /ledger/{tid}/batches/{n}    the host's totals of a batch {totals, field48}
//	GET    /accounts/{pan}              {balance, held}
//	GET    /seen                        requests received per MTI
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Faults())
	})
	mux.HandleFunc("POST /faults", func(w http.ResponseWriter, r *http.Request) {
		var f Fault
		if err := decodeBody(r, &f); err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := s.AddFault(f); err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, s.Faults())
	})
	mux.HandleFunc("PUT /faults", func(w http.ResponseWriter, r *http.Request) {
		var fs []Fault
		if err := decodeBody(r, &fs); err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := s.SetFaults(fs); err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, s.Faults())
	})
	mux.HandleFunc("DELETE /faults", func(w http.ResponseWriter, r *http.Request) {
		s.ClearFaults()
		writeJSON(w, http.StatusOK, s.Faults())
	})
	mux.HandleFunc("GET /terminals/{tid}", func(w http.ResponseWriter, r *http.Request) {
		t, ok := s.Terminal(r.PathValue("tid"))
		if !ok {
			httpError(w, http.StatusNotFound, "no such terminal")
			return
		}
		writeJSON(w, http.StatusOK, t)
	})
	mux.HandleFunc("GET /ledger/{tid}", func(w http.ResponseWriter, r *http.Request) {
		tid := r.PathValue("tid")
		writeJSON(w, http.StatusOK, map[string]any{
			"charged": s.Charged(tid), "entries": s.Entries(tid), "reversals": s.ReversalLog(tid),
		})
	})
	mux.HandleFunc("GET /ledger/{tid}/batches/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil {
			httpError(w, http.StatusBadRequest, "batch must be a number")
			return
		}
		t := s.BatchTotals(r.PathValue("tid"), n)
		writeJSON(w, http.StatusOK, map[string]any{"totals": t, "field48": t.Encode()})
	})
	mux.HandleFunc("GET /accounts/{pan}", func(w http.ResponseWriter, r *http.Request) {
		b, h, ok := s.Balance(r.PathValue("pan"))
		if !ok {
			httpError(w, http.StatusNotFound, "no such account")
			return
		}
		writeJSON(w, http.StatusOK, map[string]int64{"balance": b, "held": h})
	})
	mux.HandleFunc("GET /seen", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Seen())
	})
	return mux
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
