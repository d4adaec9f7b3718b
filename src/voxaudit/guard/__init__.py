"""Guard a speech API against query-based adversarial attacks (paper 003 and beyond).

- ``fingerprint``: landmark fingerprints (Wang 2003) and their vector form;
- ``detectors``: paper 003's per-account memory and a global landmark index, calibrated on
  benign traffic for a target false-positive rate;
- ``store``: their state, in process or in Redis;
- ``traffic``: benign query streams for calibration and evaluation;
- ``config``, ``backends``, ``service``: the FastAPI gateway; ``cli``: ``voxaudit guard``;
- ``evaluation``: how well the detectors catch query-based attacks (paper 003's metrics).
"""
