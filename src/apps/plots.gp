### section common
# vicreg_train's plots. This is the template (src/apps/plots.gp): the program fills in the
# fields (names in double braces; paths absolute), keeps the sections the run has data for,
# and writes the result as plots.gp into the output directory: `gnuplot plots.gp` redraws them.
set datafile separator ','
set datafile columnheaders
set grid

### section loss
# loss.png: the three unweighted terms, and the weighted loss that training lowers.
set terminal pngcairo size 1100,720 font ',10'
set output '{{out}}/loss.png'
set xtics {{xtics}}
set xrange [0:{{steps}}]
set multiplot layout 2,2 title 'VICReg loss over training steps'
set xlabel 'step'
set title 'invariance (unweighted): views disagree'
plot '{{out}}/metrics.csv' using 1:4 with lines lw 1.5 notitle
set title 'variance (unweighted): dims below std gamma'
plot '{{out}}/metrics.csv' using 1:5 with lines lw 1.5 lc 2 notitle
set title "covariance (unweighted, log): scales with the embeddings' variance,\nso it rises as the variance term spreads them (not a regression)"
set logscale y
plot '{{out}}/metrics.csv' using 1:6 with lines lw 1.5 lc 3 notitle
unset logscale y
set title 'weighted: the loss that training lowers = {{inv}} inv + {{var}} var + {{cov}} cov'
set key at graph 0.98, graph 0.42 right center
plot '{{out}}/metrics.csv' using 1:3 with lines lw 2 lc rgb 'black' title 'loss', \
     '' using 1:({{inv}}*$4) with lines lc 1 title 'inv', \
     '' using 1:({{var}}*$5) with lines lc 2 title 'var', \
     '' using 1:({{cov}}*$6) with lines lc 3 title 'cov'
unset multiplot
unset xrange
set xtics autofreq

### section std
# std.png: sorted per-dimension std of the embeddings (left, with the variance target gamma)
# and of the representation (right). Each panel's key lists only the lines drawn there, in its
# top-right corner, which the sorted curves leave empty (the left panel's range reaches to 30
# gamma so that the key clears the gamma line).
set terminal pngcairo size 1100,440 font ',10'
set output '{{out}}/std.png'
set multiplot layout 1,2 title 'per-dimension std over the test images, sorted (log scale)'
set logscale y
set format y '%g'
set xlabel 'dimension (sorted by std)'
set ylabel 'std'
set key default
set key top right opaque
set xrange [1:{{embed_dims}}]
set yrange [*:{{std_top}}]
set title 'embedding: projector output ({{embed_dims}} dims), what the loss sees'
plot {{gamma}} with lines dt 2 lw 1.5 lc rgb 'black' title 'gamma = {{gamma}} (the variance target)', \
     '{{out}}/std_sorted.csv' using 1:2 with lines lw 2 lc 1 title 'trained (this run)', \
     '' using 1:3 with lines lw 2 lc 2 title 'random init'{{compare}}
set xrange [1:{{repr_dims}}]
set yrange [*:*]
set title 'representation: encoder output ({{repr_dims}} dims), what the probes see'
plot '{{out}}/std_sorted.csv' using 1:4 with lines lw 2 lc 1 title 'trained (this run)', \
     '' using 1:5 with lines lw 2 lc 2 title 'random init'
unset multiplot
unset logscale y
unset xrange
unset yrange
unset ylabel
set format y '% h'

### section curve
# learning_curve.png: k-NN of the encoder during training on fixed subsets, whose figures are
# not the results table's (full sets): the title says so, and the key sits right of the plot.
set terminal pngcairo size 960,460 font ',10'
set output '{{out}}/learning_curve.png'
set title "k-NN accuracy during training (k = {{k}}, cosine) on fixed subsets:\n{{memory}} training images as memory, {{queries}} test images (the table's k-NN uses all)"
set xlabel 'step'
set ylabel 'subset test accuracy (%)'
set xtics {{xtics}}
set key default
set key outside right center
set offsets 0, 0, 1, 1
plot '{{out}}/curve.csv' using 1:2 with linespoints lw 2 pt 7 lc 1 title 'VICReg encoder', \
     '' using 1:3 with lines dt 2 lw 2 lc 2 title 'random-init encoder', \
     '' using 1:4 with lines dt 3 lw 2 lc 3 title 'raw pixels'
unset ylabel
set xtics autofreq
set offsets 0, 0, 0, 0
set key default

### section few_label
# few_label.png: the headline result, the linear probe trained on k labelled images per class
# for the trained encoder and both baselines (mean and std over the draws).
set terminal pngcairo size 800,500 font ',10'
set output '{{out}}/few_label.png'
set title 'linear probe on few labels: test accuracy, mean ± std over {{draws}} draws'
set xlabel 'labelled training images per class (log scale)'
set ylabel 'test accuracy (%)'
set logscale x
set xtics ({{ks}})
set xrange [{{k_low}}:{{k_high}}]
set offsets 0, 0, 3, 0
set key default
set key bottom right
plot '{{out}}/few_label.csv' using 1:2:3 with yerrorlines lw 2 pt 7 lc 1 title 'VICReg encoder', \
     '' using 1:4:5 with yerrorlines lw 2 pt 5 lc 2 title 'random-init encoder', \
     '' using 1:6:7 with yerrorlines lw 2 pt 9 lc 3 title 'raw pixels', \
     '' using 1:2:(sprintf('%.1f', $2)) with labels offset 0, 1.2 textcolor lt 1 notitle
unset logscale x
unset ylabel
unset xrange
set xtics autofreq
set offsets 0, 0, 0, 0
set key default

### section pca
# pca.png: the trained encoder beside its random init; every 5th test image (2000 of 10k) keeps
# the picture readable and the PNG small.
set terminal pngcairo size 960,440 font ',10'
set output '{{out}}/pca.png'
set multiplot layout 1,2 title 'test-set representations on their first two principal components (standardized; every 5th test image), coloured by class'
names = 'T-shirt/top Trouser Pullover Dress Coat Sandal Shirt Sneaker Bag Ankle-boot'
colours = '#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 #7f7f7f #bcbd22 #17becf'
set xlabel 'PC 1'
set ylabel 'PC 2'
unset key
unset grid
set title 'VICReg encoder (PC 1, 2: {{trained_pc1}}%, {{trained_pc2}}% of the variance)'
plot for [c=0:9] '{{out}}/pca.csv' every 5 using ($1==c ? $2 : 1/0):3 with points pt 7 ps 0.3 lc rgb word(colours, c+1) notitle
set title 'random-init encoder (PC 1, 2: {{random_pc1}}%, {{random_pc2}}%)'
set key outside right top spacing 0.9
plot for [c=0:9] '{{out}}/pca.csv' every 5 using ($1==c ? $4 : 1/0):5 with points pt 7 ps 0.3 lc rgb word(colours, c+1) notitle, \
     for [c=0:9] keyentry with points pt 7 ps 1.5 lc rgb word(colours, c+1) title word(names, c+1)
unset multiplot
