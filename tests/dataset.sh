# Sourced by the tests that train on Fashion-MNIST: sets `data` to Debian's copy, or skips the
# test (exit 77, CTest's SKIP_RETURN_CODE) where the dataset-fashion-mnist package is missing.
data=/usr/share/datasets/fashion-mnist
if [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then
  echo "SKIP: $data not found (install the Debian package dataset-fashion-mnist)"
  exit 77
fi
