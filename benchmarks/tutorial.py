# mypy: ignore-errors
# ruff: noqa: I001
"""The seed tutorial's script, verbatim except that its plots (and the pyplot import) are gone.

Kept as the baseline the benchmarks time wavecast against; do not "improve" it. Whitespace
was reformatted (ruff format), the plotting lines removed, and two lines added (marked
below): Keras 3 reads a Python list of targets as one target per output and fails, so the
targets become arrays, as the inputs already were. The arithmetic, configuration
(SimpleRNN(100), batch 32, 100 epochs, unseeded) and prints are the tutorial's.
"""

from keras.models import Sequential
from keras.layers import Dense, Activation, SimpleRNN
import numpy as np

x = np.linspace(-3 * np.pi, 3 * np.pi, 1000)
y = np.sin(x)

input_len = 5
X, Y = [], []
for i, _ in enumerate(x):
    if i + input_len + 1 >= len(x):
        break
    X.append(y[i : i + input_len])
    Y.append(y[i + input_len + 1])

split_index = int(len(X) * 0.8)

train_x = X[:split_index]
train_y = Y[:split_index]
test_x = X[split_index:]
test_y = Y[split_index:]

train_x = np.array(train_x)
train_x = train_x.reshape(train_x.shape[0], -1, 1)
test_x = np.array(test_x)
test_x = test_x.reshape(test_x.shape[0], -1, 1)
train_y = np.array(train_y)  # added: Keras 3 needs arrays, not lists, as targets
test_y = np.array(test_y)  # added

input_shape = (len(train_x[0]), 1)
model = Sequential()
model.add(SimpleRNN(100, return_sequences=False, input_shape=input_shape))
model.add(Dense(1))
model.add(Activation("linear"))
model.compile(loss="mse", optimizer="adam")

hist = model.fit(train_x, train_y, batch_size=32, epochs=100, verbose=0)
history = hist.history

score = model.evaluate(test_x, test_y)
print(score)

predict_y = model.predict(test_x)
