"""Networks added to the invertible rescaler (the rescaler itself, its couplings and Haar levels predate this
package and stay in models/)."""
