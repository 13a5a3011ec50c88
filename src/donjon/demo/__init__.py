"""``donjon demo``: a local Steward that trusts simulated TEEs, and a ``sim-snp`` Keep it attests.

:mod:`donjon.demo.steward` is the throwaway Steward (also used by the end-to-end tests and the
attested-start benchmark); :mod:`donjon.demo.run` is the demo itself; the demo workload
(``examples/http``) ships inside the package as ``donjon/demo/http.wasm``.
"""
