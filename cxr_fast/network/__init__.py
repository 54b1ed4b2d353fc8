"""cxr-fast on the hospital network: DICOM in (C-STORE, DICOMweb), DICOM Structured Reports out."""
