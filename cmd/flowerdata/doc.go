// Command flowerdata downloads the Oxford 17 Flowers archive from VGG and
// sorts its 1360 images into one folder per class, the layout flowerd reads:
//
//	flowerdata [-out data/flowers17] [-url URL] [-archive 17flowers.tgz] [-force]
//
// The archive is read as a stream (HTTP body, gzip, tar): nothing but the
// images is written to disk. Image NNNN goes to the class (NNNN-1)/80 in the
// order of the dataset's README (daffodil, snowdrop, ..., pansy). Every image
// is checked against the md5 list embedded from md5sums.txt, so a changed,
// missing or extra image is an error that names the file; the archive's own
// md5, published by VGG, is checked too, but as a warning only, because the
// images are what is used and each one is checked. The folder is built
// beside -out and renamed into place when complete, with an MD5SUMS file
// (`md5sum -c MD5SUMS`); a folder that is already complete and verified is
// left alone, and one that is not is replaced only with -force.
//
// Without internet access, download the archive by hand and pass it with
// -archive. It imports only the standard library.
package main
